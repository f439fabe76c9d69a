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
/// through; every finished append and compaction is announced.
struct WatchedStore {
    inner: LocalCanvasStore,
    gated: bool,
    entered: Notify,
    release: Notify,
    appended: Notify,
    compacted: Notify,
}

impl WatchedStore {
    fn new(directory: &std::path::Path, gated: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalCanvasStore::open(directory).unwrap(),
            gated,
            entered: Notify::new(),
            release: Notify::new(),
            appended: Notify::new(),
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
        let appended = self.inner.append(room, after, updates, size).await;
        self.appended.notify_one();
        appended
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
    let shared = doc.get_or_insert_text("t");
    while shared.get_string(&doc.transact()) != wanted {
        receive_update(frames, doc).await;
    }
}

/// Applies the next document frame in `frames` to `doc`, skipping awareness.
async fn receive_update(frames: &mut mpsc::Receiver<Outgoing>, doc: &Doc) {
    use yrs::updates::decoder::Decode;
    loop {
        let Some(Outgoing::Frame(frame)) = frames.recv().await else {
            panic!("the room closed the connection");
        };
        if let Ok(Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update))) =
            Message::decode_v1(&frame)
        {
            doc.transact_mut()
                .apply_update(yrs::Update::decode_v1(&update).unwrap())
                .unwrap();
            return;
        }
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

#[tokio::test]
async fn updates_that_arrive_while_one_is_stored_reach_the_others_as_one_frame() {
    use futures_util::FutureExt;
    let directory = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(directory.path(), true);
    let canvas = Canvas::new(store.clone(), RoomSettings::default());
    let _parent = running(&canvas).await;
    let mut senders = Vec::new();
    for _ in 0..3 {
        senders.push(canvas.join(room("busy"), true).await.unwrap());
    }
    let (_dave, mut dave_frames) = canvas.join(room("busy"), true).await.unwrap();
    while let Ok(Outgoing::Frame(_greeting)) = dave_frames.try_recv() {}

    let first = senders[0].0.send(edit(&Doc::with_client_id(1), "a"));
    assert!(
        first.now_or_never().is_none(),
        "the first update is being stored"
    );
    store.entered.notified().await;
    for (index, text) in [(1, "b"), (2, "c")] {
        let send = senders[index]
            .0
            .send(edit(&Doc::with_client_id(index as u64 + 1), text));
        assert!(send.now_or_never().is_none(), "it waits for the store");
    }
    // The room has taken both frames once it answers something asked after them.
    canvas.list().await.unwrap();
    assert!(
        dave_frames.try_recv().is_err(),
        "nothing is sent before it is stored"
    );

    store.release.notify_one();
    store.entered.notified().await;
    store.release.notify_one();
    let dave = Doc::with_client_id(4);
    let mut frames = 0;
    while dave
        .get_or_insert_text("t")
        .get_string(&dave.transact())
        .len()
        < 3
    {
        receive_update(&mut dave_frames, &dave).await;
        frames += 1;
    }
    assert_eq!(
        frames, 2,
        "one frame for the first update, one for the two behind it"
    );
    let stored = store.inner.load(&room("busy")).await.unwrap();
    assert_eq!(stored.journal.len(), 3, "every update is stored");
}

#[tokio::test]
async fn a_room_deleted_while_an_update_is_stored_keeps_nothing() {
    use futures_util::FutureExt;
    let directory = tempfile::tempdir().unwrap();
    let store = WatchedStore::new(directory.path(), true);
    let canvas = Canvas::new(store.clone(), RoomSettings::default());
    let _parent = running(&canvas).await;
    let (alice, mut alice_frames) = canvas.join(room("gone"), true).await.unwrap();
    assert!(
        alice
            .send(edit(&Doc::with_client_id(1), "x"))
            .now_or_never()
            .is_none()
    );
    store.entered.notified().await;
    let deleting = tokio::spawn({
        let canvas = canvas.clone();
        async move { canvas.delete(&room("gone")).await }
    });
    // The room has taken the delete once it closes its connections.
    while !matches!(alice_frames.recv().await, Some(Outgoing::Close(_)) | None) {}
    store.release.notify_one();
    store.appended.notified().await;
    assert!(
        deleting.await.unwrap().unwrap(),
        "the update was stored, then deleted"
    );
    let stored = store.inner.load(&room("gone")).await.unwrap();
    assert!(
        stored.journal.is_empty() && stored.snapshot.is_none(),
        "{stored:?}"
    );
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
