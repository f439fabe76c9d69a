//! The turn journal: what a session appends after a turn instead of rewriting its whole
//! snapshot.
//!
//! A record holds the history entries the session added since its last stored write (the
//! user message, tool rounds, the reply) and the small state those turns leave behind
//! (`updated_at`, the tool calls waiting for a yes). A store that keeps a journal
//! ([`SnapshotStore::journal`]) keeps a session's records in order after its snapshot; the
//! next snapshot of the session replaces them, since it contains them. Loading reads the
//! snapshot and replays the records after it ([`SessionSnapshot::recover`]).
//!
//! Records are encoded like snapshots: a 2-byte little-endian format version, then bincode.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::{
    HistoryEntry, PendingTools, SessionSnapshot, SnapshotStore, StoreError, corrupt, pictures,
    split_version,
};
use crate::ids::SessionKey;

/// The record format version this build writes.
pub const JOURNAL_FORMAT_VERSION: u16 = 1;
/// Version 1 followed by the pictures of the record's entries: written only when there are
/// any (see `pictures`).
pub const JOURNAL_WITH_PICTURES_VERSION: u16 = 2;

/// The most records a session appends after a snapshot before it writes a whole snapshot
/// again: loading never replays more, and a store may keep only that many after the
/// newest snapshot.
pub const RECORDS_PER_SNAPSHOT: u32 = 32;

/// One journal record, as read back.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct JournalRecord {
    /// The entries added, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Unix seconds of the last change.
    pub updated_at: u64,
    /// Tool calls waiting for the user's yes or no after these turns.
    pub pending: Option<PendingTools>,
}

/// A record ready to append: its session and its versioned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRecord {
    pub key: SessionKey,
    pub bytes: Vec<u8>,
}

/// A session's newest history entries and state, borrowed for encoding: serialises
/// exactly as [`JournalRecord`], without copying the entries.
#[derive(Debug, Serialize)]
pub struct RecordView<'a> {
    entries: Newest<'a>,
    updated_at: u64,
    pending: Option<&'a PendingTools>,
}

/// The last `count` entries of a history, serialised as a sequence.
#[derive(Debug)]
struct Newest<'a> {
    history: &'a VecDeque<HistoryEntry>,
    count: usize,
}

impl Newest<'_> {
    fn iter(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.history.range(self.history.len() - self.count..)
    }
}

impl Serialize for Newest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'a> RecordView<'a> {
    /// The record of the last `count` entries of `history`; `None` when the history holds
    /// fewer (some left the window before they were stored: a whole snapshot is due).
    pub fn newest(
        history: &'a VecDeque<HistoryEntry>,
        count: usize,
        updated_at: u64,
        pending: Option<&'a PendingTools>,
    ) -> Option<Self> {
        (count <= history.len()).then_some(Self {
            entries: Newest { history, count },
            updated_at,
            pending,
        })
    }

    /// Version prefix + bincode.
    pub fn encode(&self, key: &SessionKey) -> EncodedRecord {
        let mut bytes = JOURNAL_FORMAT_VERSION.to_le_bytes().to_vec();
        bincode::serde::encode_into_std_write(self, &mut bytes, bincode::config::standard())
            .expect("a journal record holds only bincode-encodable types");
        if pictures::append(self.entries.iter(), &mut bytes) {
            bytes[..2].copy_from_slice(&JOURNAL_WITH_PICTURES_VERSION.to_le_bytes());
        }
        EncodedRecord {
            key: key.clone(),
            bytes,
        }
    }
}

impl JournalRecord {
    /// Reads any record version this build knows.
    pub fn decode(key: &SessionKey, bytes: &[u8]) -> Result<Self, StoreError> {
        let (version, body) = split_version(key, bytes)?;
        match version {
            JOURNAL_FORMAT_VERSION | JOURNAL_WITH_PICTURES_VERSION => {
                let (mut record, read): (Self, _) =
                    bincode::serde::decode_from_slice(body, bincode::config::standard())
                        .map_err(|error| corrupt(key, format!("journal record: {error}")))?;
                if version == JOURNAL_WITH_PICTURES_VERSION {
                    pictures::attach(&mut record.entries, &body[read..])
                        .map_err(|reason| corrupt(key, reason))?;
                }
                Ok(record)
            }
            other => Err(StoreError::UnknownVersion(other)),
        }
    }
}

impl SessionSnapshot {
    /// Applies a record written after this snapshot. The history is not trimmed to a
    /// window here: the session that loads it does that.
    pub fn replay(&mut self, record: JournalRecord) {
        self.history.extend(record.entries);
        self.updated_at = record.updated_at;
        self.pending = record.pending;
    }

    /// A session as a store keeps it: its snapshot (if any) and the records after it,
    /// oldest first. Records without a snapshot replay onto an empty session.
    pub fn recover<'b>(
        key: &SessionKey,
        snapshot: Option<&[u8]>,
        records: impl IntoIterator<Item = &'b [u8]>,
    ) -> Result<Option<Self>, StoreError> {
        let mut session = snapshot.map(|bytes| Self::decode(key, bytes)).transpose()?;
        for bytes in records {
            let record = JournalRecord::decode(key, bytes)?;
            session
                .get_or_insert_with(|| Self::empty(key.clone()))
                .replay(record);
        }
        Ok(session)
    }
}

/// A store's turn journal.
#[async_trait::async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Appends `record` after the session's snapshot and earlier records; returns once it
    /// is durable. The session's next [`SnapshotStore::save`] replaces its records, and
    /// [`SnapshotStore::delete`] removes them.
    async fn append(&self, record: EncodedRecord) -> Result<(), StoreError>;
}

/// The journal of `store`, if it keeps one.
pub fn journal_of(store: &Arc<dyn SnapshotStore>) -> Option<Arc<dyn Journal>> {
    Arc::clone(store).journal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Role;

    fn entry(text: &str) -> HistoryEntry {
        HistoryEntry {
            role: Role::User,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            message_id: Some(format!("id-{text}")),
            timestamp: 7,
            images: Vec::new(),
        }
    }

    #[test]
    fn a_record_holds_only_the_newest_entries_and_replays_onto_its_snapshot() {
        let key = SessionKey::new_unchecked("ws", "ann");
        let history: VecDeque<_> = ["a", "b", "c"].into_iter().map(entry).collect();
        let snapshot = SessionSnapshot {
            key: key.clone(),
            history: vec![entry("a")],
            updated_at: 1,
            pending: None,
        };
        let record = RecordView::newest(&history, 2, 9, None)
            .unwrap()
            .encode(&key);
        let snapshot_bytes = snapshot.encode().bytes;
        let recovered =
            SessionSnapshot::recover(&key, Some(&snapshot_bytes), [record.bytes.as_slice()])
                .unwrap()
                .unwrap();
        assert_eq!(recovered.history, Vec::from(history));
        assert_eq!(recovered.updated_at, 9);
    }

    #[test]
    fn records_without_a_snapshot_replay_onto_an_empty_session() {
        let key = SessionKey::new_unchecked("ws", "ben");
        let history: VecDeque<_> = [entry("x")].into();
        let record = RecordView::newest(&history, 1, 3, None)
            .unwrap()
            .encode(&key);
        let recovered = SessionSnapshot::recover(&key, None, [record.bytes.as_slice()]).unwrap();
        assert_eq!(recovered.map(|session| session.history.len()), Some(1));
        assert_eq!(SessionSnapshot::recover(&key, None, []).unwrap(), None);
        assert!(RecordView::newest(&history, 2, 3, None).is_none());
    }

    #[test]
    fn a_record_with_pictures_keeps_them_in_its_newer_format() {
        let key = SessionKey::new_unchecked("ws", "dee");
        let mut shown = entry("look");
        shown.images.push(crate::uploads::ImageRef {
            upload: crate::uploads::UploadId::parse("up-00000000000000000000000000000000").unwrap(),
            media_type: crate::provider::ImageType::Png,
        });
        let history: VecDeque<_> = [entry("before"), shown.clone()].into();
        let newest = RecordView::newest(&history, 1, 3, None).unwrap();
        let both = RecordView::newest(&history, 2, 3, None).unwrap();
        let words_only = VecDeque::from([entry("x")]);
        let plain = RecordView::newest(&words_only, 1, 3, None).unwrap();
        assert_eq!(
            &plain.encode(&key).bytes[..2],
            &JOURNAL_FORMAT_VERSION.to_le_bytes()
        );
        for record in [newest, both] {
            let bytes = record.encode(&key).bytes;
            assert_eq!(&bytes[..2], &JOURNAL_WITH_PICTURES_VERSION.to_le_bytes());
            let read = JournalRecord::decode(&key, &bytes).unwrap();
            assert_eq!(read.entries.last(), Some(&shown));
        }
    }

    #[test]
    fn refuses_records_of_unknown_versions_and_garbage() {
        let key = SessionKey::new_unchecked("ws", "cy");
        let unreadable: [&[u8]; 3] = [&[7, 7, 0], &[1], &[1, 0, 0xff, 0xff, 0xff]];
        let errors = unreadable.map(|bytes| JournalRecord::decode(&key, bytes));
        assert!(matches!(errors[0], Err(StoreError::UnknownVersion(0x0707))));
        assert!(
            errors[1..]
                .iter()
                .all(|error| matches!(error, Err(StoreError::Corrupt { .. })))
        );
    }
}
