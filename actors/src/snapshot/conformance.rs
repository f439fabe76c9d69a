//! The conformance suite every [`SnapshotStore`] must pass. Call [`run_all`] from a test
//! of each implementation with a fresh, empty store.

use std::collections::VecDeque;

use super::{HistoryEntry, Journal, RecordView, SessionSnapshot, SnapshotStore};
use crate::ids::SessionKey;
use crate::provider::Role;

fn snapshot_of(platform: &str, conversation: &str, text: &str) -> SessionSnapshot {
    SessionSnapshot {
        key: SessionKey::new_unchecked(platform, conversation),
        history: vec![HistoryEntry {
            role: Role::User,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            message_id: Some(format!("id-{text}")),
            timestamp: 1,
            images: Vec::new(),
        }],
        updated_at: 1,
        pending: None,
    }
}

/// Runs every check against `store`, which must start empty.
pub async fn run_all(store: &dyn SnapshotStore) {
    missing_key_loads_as_none(store).await;
    save_then_load_returns_the_same_snapshot(store).await;
    save_overwrites(store).await;
    delete_removes_and_reports(store).await;
    list_pages_in_key_order(store).await;
}

/// Runs every journal check against a store that keeps one (`journal` is the store's own
/// [`SnapshotStore::journal`]); the store must start empty.
pub async fn run_journal(store: &dyn SnapshotStore, journal: &dyn Journal) {
    records_replay_in_order_onto_the_snapshot(store, journal).await;
    a_snapshot_replaces_the_records_before_it(store, journal).await;
    delete_removes_the_records_too(store, journal).await;
    records_of_one_session_leave_others_alone(store, journal).await;
}

/// Appends the newest `count` entries of `history` for `snapshot`'s session.
async fn append(
    journal: &dyn Journal,
    snapshot: &SessionSnapshot,
    history: &VecDeque<HistoryEntry>,
    count: usize,
) {
    let record = RecordView::newest(history, count, history.len() as u64, None)
        .expect("the entries are in the history")
        .encode(&snapshot.key);
    journal.append(record).await.unwrap();
}

/// `snapshot` with `texts` appended to its history, as a session would hold it.
fn grown(snapshot: &SessionSnapshot, texts: &[&str]) -> VecDeque<HistoryEntry> {
    let mut history: VecDeque<_> = snapshot.history.iter().cloned().collect();
    for text in texts {
        history.extend(snapshot_of("conf", "x", text).history);
    }
    history
}

async fn records_replay_in_order_onto_the_snapshot(
    store: &dyn SnapshotStore,
    journal: &dyn Journal,
) {
    let snapshot = snapshot_of("conf", "journal", "one");
    store.save(snapshot.encode()).await.unwrap();
    let history = grown(&snapshot, &["two", "three", "four"]);
    append(
        journal,
        &snapshot,
        &history.range(..3).cloned().collect(),
        2,
    )
    .await;
    append(journal, &snapshot, &history, 1).await;
    let loaded = store.load(&snapshot.key).await.unwrap().unwrap();
    assert_eq!(loaded.history, Vec::from(history.clone()));
    assert_eq!(loaded.updated_at, history.len() as u64, "the last record's");
    assert_eq!(store.count(), 1, "records are not snapshots");
    store.delete(&snapshot.key).await.unwrap();
}

async fn a_snapshot_replaces_the_records_before_it(
    store: &dyn SnapshotStore,
    journal: &dyn Journal,
) {
    let snapshot = snapshot_of("conf", "compacted", "one");
    store.save(snapshot.encode()).await.unwrap();
    append(journal, &snapshot, &grown(&snapshot, &["two"]), 1).await;
    let replacement = snapshot_of("conf", "compacted", "fresh");
    store.save(replacement.encode()).await.unwrap();
    assert_eq!(
        store.load(&snapshot.key).await.unwrap(),
        Some(replacement.clone()),
        "the records before the snapshot are gone"
    );
    let history = grown(&replacement, &["after"]);
    append(journal, &replacement, &history, 1).await;
    let loaded = store.load(&snapshot.key).await.unwrap().unwrap();
    assert_eq!(loaded.history, Vec::from(history));
    store.delete(&snapshot.key).await.unwrap();
}

async fn delete_removes_the_records_too(store: &dyn SnapshotStore, journal: &dyn Journal) {
    let snapshot = snapshot_of("conf", "deleted", "one");
    store.save(snapshot.encode()).await.unwrap();
    append(journal, &snapshot, &grown(&snapshot, &["two"]), 1).await;
    assert!(store.delete(&snapshot.key).await.unwrap());
    assert_eq!(store.load(&snapshot.key).await.unwrap(), None);
}

async fn records_of_one_session_leave_others_alone(
    store: &dyn SnapshotStore,
    journal: &dyn Journal,
) {
    // `ab` sorts right after `a`: a prefix scan that forgot the separator would mix them.
    let first = snapshot_of("conf", "a", "first");
    let second = snapshot_of("conf", "ab", "second");
    store.save(first.encode()).await.unwrap();
    store.save(second.encode()).await.unwrap();
    append(journal, &first, &grown(&first, &["more"]), 1).await;
    assert_eq!(store.load(&second.key).await.unwrap(), Some(second.clone()));
    store.save(second.encode()).await.unwrap();
    assert_eq!(
        store
            .load(&first.key)
            .await
            .unwrap()
            .map(|s| s.history.len()),
        Some(2),
        "a snapshot of another session keeps these records"
    );
    store.delete(&first.key).await.unwrap();
    store.delete(&second.key).await.unwrap();
}

async fn missing_key_loads_as_none(store: &dyn SnapshotStore) {
    let key = SessionKey::new_unchecked("conf", "missing");
    assert_eq!(store.load(&key).await.unwrap(), None);
    assert!(!store.delete(&key).await.unwrap());
}

async fn save_then_load_returns_the_same_snapshot(store: &dyn SnapshotStore) {
    let snapshot = snapshot_of("conf", "roundtrip", "hello");
    store.save(snapshot.encode()).await.unwrap();
    assert_eq!(
        store.load(&snapshot.key).await.unwrap(),
        Some(snapshot.clone())
    );
    store.delete(&snapshot.key).await.unwrap();
}

async fn save_overwrites(store: &dyn SnapshotStore) {
    let first = snapshot_of("conf", "overwrite", "one");
    let second = snapshot_of("conf", "overwrite", "two");
    store.save(first.encode()).await.unwrap();
    let count_after_first = store.count();
    store.save(second.encode()).await.unwrap();
    assert_eq!(
        store.count(),
        count_after_first,
        "an overwrite must not count twice"
    );
    assert_eq!(store.load(&first.key).await.unwrap(), Some(second.clone()));
    store.delete(&second.key).await.unwrap();
}

async fn delete_removes_and_reports(store: &dyn SnapshotStore) {
    let snapshot = snapshot_of("conf", "delete", "x");
    store.save(snapshot.encode()).await.unwrap();
    let before = store.count();
    assert!(store.delete(&snapshot.key).await.unwrap());
    assert_eq!(store.count(), before - 1);
    assert_eq!(store.load(&snapshot.key).await.unwrap(), None);
}

async fn list_pages_in_key_order(store: &dyn SnapshotStore) {
    let names = ["c", "a", "e", "b", "d"];
    for name in names {
        store
            .save(snapshot_of("list", name, name).encode())
            .await
            .unwrap();
    }
    assert_eq!(store.count(), 5);
    let first_page = store.list(None, 2).await.unwrap();
    let rendered: Vec<String> = first_page.iter().map(ToString::to_string).collect();
    assert_eq!(rendered, ["list:a", "list:b"]);
    let second_page = store.list(first_page.last(), 10).await.unwrap();
    let rendered: Vec<String> = second_page.iter().map(ToString::to_string).collect();
    assert_eq!(rendered, ["list:c", "list:d", "list:e"]);
    for name in names {
        store
            .delete(&SessionKey::new_unchecked("list", name))
            .await
            .unwrap();
    }
    assert_eq!(store.count(), 0);
}
