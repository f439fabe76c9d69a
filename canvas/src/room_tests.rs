//! The room actors through the [`Canvas`] handle, on a real store.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{Notify, mpsc};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Transact};

use crate::rooms::Canvas;
use crate::store::{CanvasStore, CanvasStoreError, LocalCanvasStore, RoomRecord, StoredRoom};
use crate::test_edits::edit;
use crate::{Outgoing, RoomName, RoomSettings};

/// Stands in for the node supervisor.
struct Parent;

impl Actor for Parent {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

async fn running(canvas: &Canvas) -> ActorRef<()> {
    let (parent, _) = Actor::spawn(None, Parent, ()).await.unwrap();
    (canvas.child_spec().start)(parent.get_cell())
        .await
        .unwrap();
    parent
}

/// A store the test watches: with `gated`, each append waits until the test lets it
/// through; every finished compaction is announced.
struct WatchedStore {
    inner: LocalCanvasStore,
    gated: bool,
    entered: Notify,
    release: Notify,
    compacted: Notify,
}

impl WatchedStore {
    fn new(directory: &std::path::Path, gated: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalCanvasStore::open(directory).unwrap(),
            gated,
            entered: Notify::new(),
            release: Notify::new(),
            compacted: Notify::new(),
        })
    }
}

#[async_trait::async_trait]
impl CanvasStore for WatchedStore {
    async fn load(&self, room: &RoomName) -> Result<StoredRoom, CanvasStoreError> {
        self.inner.load(room).await
    }

    async fn append(
        &self,
        room: &RoomName,
        after: u64,
        updates: Vec<Vec<u8>>,
        size: u64,
    ) -> Result<u64, CanvasStoreError> {
        if self.gated {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.inner.append(room, after, updates, size).await
    }

    async fn compact(
        &self,
        room: &RoomName,
        through: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), CanvasStoreError> {
        let compacted = self.inner.compact(room, through, snapshot).await;
        self.compacted.notify_one();
        compacted
    }

    async fn delete(&self, room: &RoomName) -> Result<bool, CanvasStoreError> {
        self.inner.delete(room).await
    }

    async fn rooms(&self) -> Result<Vec<RoomRecord>, CanvasStoreError> {
        self.inner.rooms().await
    }
}

/// Applies every document frame in `frames` to `doc` until one holds `wanted`.
async fn receive_text(frames: &mut mpsc::Receiver<Outgoing>, doc: &Doc, wanted: &str) {
    use yrs::updates::decoder::Decode;
    let shared = doc.get_or_insert_text("t");
    while shared.get_string(&doc.transact()) != wanted {
        let Some(Outgoing::Frame(frame)) = frames.recv().await else {
            panic!("the room closed the connection");
        };
        let Ok(Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update))) =
            Message::decode_v1(&frame)
        else {
            continue;
        };
        doc.transact_mut()
            .apply_update(yrs::Update::decode_v1(&update).unwrap())
            .unwrap();
    }
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

#[tokio::test]
async fn an_update_reaches_the_others_only_after_it_is_stored() {
    let directory = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(directory.path(), true);
    let canvas = Canvas::new(store.clone(), RoomSettings::default());
    let _parent = running(&canvas).await;
    let (alice, _alice_frames) = canvas.join(room("board"), true).await.unwrap();
    let (_bob, mut bob_frames) = canvas.join(room("board"), true).await.unwrap();
    while let Ok(Outgoing::Frame(_greeting)) = bob_frames.try_recv() {}

    let sending = tokio::spawn(async move {
        alice
            .send(edit(&Doc::with_client_id(1), "hello"))
            .await
            .unwrap();
        alice
    });
    store.entered.notified().await;
    assert!(
        bob_frames.try_recv().is_err(),
        "nothing is forwarded while the update is not stored"
    );
    store.release.notify_one();
    let _alice = sending.await.unwrap();
    receive_text(&mut bob_frames, &Doc::with_client_id(2), "hello").await;
    let stored = store.inner.load(&room("board")).await.unwrap();
    assert_eq!(stored.journal.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_empty_room_passivates_and_the_next_join_loads_it_again() {
    let directory = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(directory.path(), false);
    let settings = RoomSettings {
        idle_passivate: std::time::Duration::from_secs(30),
        ..RoomSettings::default()
    };
    let canvas = Canvas::new(store.clone(), settings);
    let _parent = running(&canvas).await;
    let (alice, _frames) = canvas.join(room("kept"), true).await.unwrap();
    alice
        .send(edit(&Doc::with_client_id(1), "remember me"))
        .await
        .unwrap();
    drop(alice);
    // Paused time runs ahead to the room's idle ticks; the compaction is real disk work.
    store.compacted.notified().await;
    let stored = store.inner.load(&room("kept")).await.unwrap();
    assert!(
        stored.snapshot.is_some() && stored.journal.is_empty(),
        "a passivating room folds its journal into a snapshot: {stored:?}"
    );

    let bob = Doc::with_client_id(2);
    let (asker, mut asked) = canvas.join(room("kept"), true).await.unwrap();
    asker
        .send(Message::Sync(SyncMessage::SyncStep1(bob.transact().state_vector())).encode_v1())
        .await
        .unwrap();
    receive_text(&mut asked, &bob, "remember me").await;
}

#[tokio::test]
async fn a_bad_frame_closes_only_its_connection_with_the_reason() {
    let directory = tempfile::tempdir().unwrap();
    let canvas = Canvas::new(
        Arc::new(LocalCanvasStore::open(directory.path()).unwrap()),
        RoomSettings::default(),
    );
    let _parent = running(&canvas).await;
    let (mallory, mut mallory_frames) = canvas.join(room("r"), true).await.unwrap();
    let (alice, _alice_frames) = canvas.join(room("r"), true).await.unwrap();
    let (_bob, mut bob_frames) = canvas.join(room("r"), true).await.unwrap();
    mallory.send(vec![0, 9, 9]).await.unwrap();
    let closed = loop {
        match mallory_frames.recv().await {
            Some(Outgoing::Close(reason)) => break reason,
            Some(Outgoing::Frame(_)) => {}
            None => panic!("closed without a reason"),
        }
    };
    assert_eq!(closed.code, 1007, "{closed:?}");
    assert!(closed.reason.contains("not y-sync"), "{closed:?}");
    assert!(
        mallory
            .send(edit(&Doc::with_client_id(9), "late"))
            .await
            .is_err(),
        "a closed connection's next frame is refused, not silently dropped"
    );
    alice
        .send(edit(&Doc::with_client_id(1), "still here"))
        .await
        .unwrap();
    receive_text(&mut bob_frames, &Doc::with_client_id(2), "still here").await;
}
