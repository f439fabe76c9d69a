//! The conformance suite every [`SnapshotStore`] must pass. Call [`run_all`] from a test
//! of each implementation with a fresh, empty store.

use super::{HistoryEntry, SessionSnapshot, SnapshotStore};
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
