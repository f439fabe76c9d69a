//! The turn journal in the cluster's KV bucket: a session's journal records are further
//! values of its own key, after the snapshot they follow.
//!
//! One key per session keeps the fencing of the snapshot design. Every write, record or
//! snapshot, is compare-and-set on the key's revision (`Nats-Expected-Last-Subject-Sequence`
//! underneath), so a node that lost a session cannot append a turn after the new owner wrote,
//! whichever kind of write either made. Records under keys of their own could not be fenced
//! like that: a stale node's new record key would not conflict with anything.
//!
//! The bucket keeps [`HISTORY`] values per key, more than the [`RECORDS_PER_SNAPSHOT`]
//! records a session appends before its next snapshot, so the newest snapshot and every
//! record after it are always kept. A snapshot write then purges the values before it.
//!
//! A value is either a snapshot, stored as the versioned bytes it always was (so buckets
//! written before the journal read unchanged), or a record: [`RECORD_TAG`], then the
//! record's own versioned bytes. The tag is a format version no snapshot will have.

use async_nats::jetstream::kv::{Entry, Operation};
use bytes::Bytes;
use troupe_actors::SessionKey;
use troupe_actors::snapshot::{RECORDS_PER_SNAPSHOT, SessionSnapshot, StoreError};

/// Values the bucket keeps per key.
pub(crate) const HISTORY: i64 = 64;

const _: () = assert!(
    (RECORDS_PER_SNAPSHOT as i64) < HISTORY,
    "the newest snapshot must stay within the bucket's history"
);

/// The first two bytes of a journal record's value: `u16::MAX` little-endian, a snapshot
/// format version that will never be used.
pub(crate) const RECORD_TAG: [u8; 2] = u16::MAX.to_le_bytes();

/// One stored value of a session's key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoredValue<'a> {
    /// A snapshot's versioned bytes.
    Snapshot(&'a [u8]),
    /// A journal record's versioned bytes, without the tag.
    Record(&'a [u8]),
}

impl<'a> StoredValue<'a> {
    /// Tells a record from a snapshot by its first two bytes.
    pub(crate) fn of(bytes: &'a [u8]) -> Self {
        match bytes.strip_prefix(&RECORD_TAG) {
            Some(record) => Self::Record(record),
            None => Self::Snapshot(bytes),
        }
    }
}

/// The value that stores a journal record's versioned bytes.
pub(crate) fn tagged_record(record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(RECORD_TAG.len() + record.len());
    value.extend_from_slice(&RECORD_TAG);
    value.extend_from_slice(record);
    value
}

/// One value of a key's history, as [`recover`] needs it.
#[derive(Clone, Debug)]
pub(crate) struct KeyValue {
    pub(crate) revision: u64,
    /// A delete or purge marker: the values before it are gone.
    pub(crate) deleted: bool,
    pub(crate) value: Bytes,
}

impl From<Entry> for KeyValue {
    fn from(entry: Entry) -> Self {
        Self {
            revision: entry.revision,
            deleted: entry.operation != Operation::Put,
            value: entry.value,
        }
    }
}

/// A session read back from its key's history, and the revision of the newest value.
#[derive(Debug, PartialEq)]
pub(crate) struct Recovered {
    pub(crate) session: Option<SessionSnapshot>,
    pub(crate) revision: Option<u64>,
}

/// Rebuilds a session from every value its key keeps, oldest first: the newest snapshot
/// after the last delete, with the records after it replayed.
pub(crate) fn recover(key: &SessionKey, history: &[KeyValue]) -> Result<Recovered, StoreError> {
    let live_from = history
        .iter()
        .rposition(|entry| entry.deleted)
        .map_or(0, |marker| marker + 1);
    let live = &history[live_from..];
    let Some(newest) = live.last() else {
        return Ok(Recovered {
            session: None,
            revision: None,
        });
    };
    let snapshot_at = live
        .iter()
        .rposition(|entry| matches!(StoredValue::of(&entry.value), StoredValue::Snapshot(_)));
    if snapshot_at.is_none() && live_from == 0 && live.len() as i64 >= HISTORY {
        return Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: format!("{HISTORY} journal records and no snapshot among them"),
        });
    }
    let snapshot = snapshot_at.map(|at| live[at].value.as_ref());
    let records = live[snapshot_at.map_or(0, |at| at + 1)..]
        .iter()
        .filter_map(|entry| match StoredValue::of(&entry.value) {
            StoredValue::Record(record) => Some(record),
            StoredValue::Snapshot(_) => None,
        });
    Ok(Recovered {
        session: SessionSnapshot::recover(key, snapshot, records)?,
        revision: Some(newest.revision),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use troupe_actors::snapshot::{HistoryEntry, RecordView};

    fn entry(revision: u64, operation: Operation, value: Vec<u8>) -> KeyValue {
        KeyValue {
            revision,
            deleted: operation != Operation::Put,
            value: value.into(),
        }
    }

    fn snapshot(key: &SessionKey, texts: &[&str]) -> SessionSnapshot {
        let mut snapshot = SessionSnapshot::empty(key.clone());
        snapshot.history = texts.iter().map(|text| said(text)).collect();
        snapshot
    }

    fn said(text: &str) -> HistoryEntry {
        HistoryEntry {
            role: troupe_actors::provider::Role::User,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            message_id: None,
            timestamp: 1,
            images: Vec::new(),
        }
    }

    fn record(key: &SessionKey, text: &str, updated_at: u64) -> Vec<u8> {
        let history: VecDeque<_> = [said(text)].into();
        let record = RecordView::newest(&history, 1, updated_at, None)
            .unwrap()
            .encode(key);
        tagged_record(&record.bytes)
    }

    #[test]
    fn a_record_is_told_from_a_snapshot_by_its_tag() {
        let key = SessionKey::new_unchecked("ws", "ann");
        let stored = snapshot(&key, &["hi"]).encode().bytes;
        assert_eq!(StoredValue::of(&stored), StoredValue::Snapshot(&stored));
        let value = record(&key, "more", 2);
        assert!(
            matches!(StoredValue::of(&value), StoredValue::Record(bytes) if bytes == &value[2..])
        );
    }

    #[test]
    fn the_newest_snapshot_and_the_records_after_it_make_the_session() {
        let key = SessionKey::new_unchecked("ws", "ann");
        let history = [
            entry(1, Operation::Put, snapshot(&key, &["old"]).encode().bytes),
            entry(2, Operation::Put, record(&key, "ignored", 2)),
            entry(
                3,
                Operation::Put,
                snapshot(&key, &["a", "b"]).encode().bytes,
            ),
            entry(4, Operation::Put, record(&key, "c", 7)),
            entry(5, Operation::Put, record(&key, "d", 9)),
        ];
        let recovered = recover(&key, &history).unwrap();
        assert_eq!(recovered.revision, Some(5));
        let session = recovered.session.unwrap();
        let texts: Vec<_> = session.history.iter().map(|e| &*e.content).collect();
        assert_eq!(texts, ["a", "b", "c", "d"]);
        assert_eq!(session.updated_at, 9);
    }

    #[test]
    fn values_before_a_delete_are_not_the_session() {
        let key = SessionKey::new_unchecked("ws", "ann");
        let deleted = [
            entry(1, Operation::Put, snapshot(&key, &["gone"]).encode().bytes),
            entry(2, Operation::Purge, Vec::new()),
        ];
        assert_eq!(
            recover(&key, &deleted).unwrap(),
            Recovered {
                session: None,
                revision: None
            }
        );
        let mut again = deleted.to_vec();
        again.push(entry(3, Operation::Put, record(&key, "new", 4)));
        let session = recover(&key, &again).unwrap().session.unwrap();
        assert_eq!(
            session.history.len(),
            1,
            "records replay onto an empty session"
        );
    }

    #[test]
    fn a_full_history_of_records_without_a_snapshot_is_refused() {
        let key = SessionKey::new_unchecked("ws", "ann");
        let history: Vec<_> = (1..=HISTORY as u64)
            .map(|revision| entry(revision, Operation::Put, record(&key, "r", revision)))
            .collect();
        assert!(matches!(
            recover(&key, &history),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
