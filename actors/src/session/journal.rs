//! Which write a session's next commit is: a journal record of the entries appended since
//! the last stored write, or its whole snapshot (see [`crate::snapshot::Journal`]).
//!
//! A session writes its whole snapshot:
//! - first, after it starts (a new session, or one loaded with records after its snapshot:
//!   the snapshot folds them in);
//! - every [`RECORDS_PER_SNAPSHOT`] records, so loading never replays more than that;
//! - after anything but an append changed the history (a failed turn taken back, a reset);
//! - after a failed write, since a write that reported failure may still have landed, and
//!   a record appended twice would replay twice while a snapshot is the same however often
//!   it is written;
//! - when it goes idle with records after its snapshot (passivation);
//! - when its store keeps no journal.

use std::sync::Arc;

use super::SessionState;
use super::commit::WriteMark;
use crate::snapshot::{
    EncodedRecord, EncodedSnapshot, Journal, RECORDS_PER_SNAPSHOT, RecordView, SnapshotStore,
    StoreError, journal_of,
};

/// The session's place in its journal. Owned by [`super::commit::Commit`].
#[derive(Debug)]
pub(super) struct JournalCursor {
    /// History entries appended since the session started.
    appended: u64,
    /// `appended` when the last successful write was taken.
    stored_through: u64,
    /// Records stored since the last snapshot.
    records: u32,
    /// Changes that need a whole snapshot, counted; one is due while a write has not
    /// stored the latest.
    rewrites: u64,
    /// `rewrites` when the last snapshot that succeeded was taken.
    snapshot_rewrites: u64,
}

impl Default for JournalCursor {
    /// A session that just started: its first write is a snapshot.
    fn default() -> Self {
        Self {
            appended: 0,
            stored_through: 0,
            records: 0,
            rewrites: 1,
            snapshot_rewrites: 0,
        }
    }
}

/// What a write contains, for the bookkeeping once it ends.
#[derive(Clone, Copy, Debug)]
pub(super) struct JournalMark {
    appended: u64,
    rewrites: u64,
    snapshot: bool,
}

impl JournalCursor {
    /// An entry was appended to the history.
    pub(super) const fn appended(&mut self) {
        self.appended += 1;
    }

    /// The history changed in a way a record cannot say: the next write is a snapshot.
    pub(super) const fn rewritten(&mut self) {
        self.rewrites += 1;
    }

    /// Whether records follow the last snapshot (an idle session folds them in).
    pub(super) const fn has_records(&self) -> bool {
        self.records > 0
    }

    /// How many of the newest entries the next write appends as a record, or `None` when
    /// it must be the whole snapshot (`history_len` entries are in the window now).
    pub(super) fn record_size(&self, history_len: usize) -> Option<usize> {
        let unstored = usize::try_from(self.appended - self.stored_through).ok()?;
        let snapshot_due =
            self.rewrites != self.snapshot_rewrites || self.records >= RECORDS_PER_SNAPSHOT;
        (!snapshot_due && unstored <= history_len).then_some(unstored)
    }

    /// Marks a write taken now.
    pub(super) const fn mark(&self, snapshot: bool) -> JournalMark {
        JournalMark {
            appended: self.appended,
            rewrites: self.rewrites,
            snapshot,
        }
    }

    /// The write `mark` succeeded.
    pub(super) const fn written(&mut self, mark: JournalMark) {
        self.stored_through = mark.appended;
        if mark.snapshot {
            self.records = 0;
            self.snapshot_rewrites = mark.rewrites;
        } else {
            self.records += 1;
        }
    }

    /// A write failed: the next one is a snapshot.
    pub(super) const fn write_failed(&mut self) {
        self.rewritten();
    }
}

/// One write of a session, ready to run.
pub(super) enum SessionWrite {
    Snapshot(EncodedSnapshot),
    Record(Arc<dyn Journal>, EncodedRecord),
}

impl SessionWrite {
    /// Stores it; returns once it is durable.
    pub(super) async fn run(self, store: &dyn SnapshotStore) -> Result<(), StoreError> {
        match self {
            Self::Snapshot(snapshot) => store.save(snapshot).await,
            Self::Record(journal, record) => journal.append(record).await,
        }
    }
}

impl SessionState {
    /// The write that stores what memory holds now: a journal record when the store keeps
    /// a journal and one suffices, else the whole snapshot (always when `compact`).
    pub(super) fn planned_write(&self, compact: bool) -> (SessionWrite, WriteMark) {
        let record = journal_of(&self.context.store)
            .filter(|_| !compact)
            .zip(self.commit.record_size(self.history.len()))
            .and_then(|(journal, count)| {
                let view = RecordView::newest(
                    &self.history,
                    count,
                    self.updated_at,
                    self.pending.as_ref(),
                )?;
                Some(SessionWrite::Record(journal, view.encode(&self.key)))
            });
        match record {
            Some(record) => (record, self.commit.mark(false)),
            None => (
                SessionWrite::Snapshot(self.snapshot()),
                self.commit.mark(true),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_snapshot() -> JournalCursor {
        let mut cursor = JournalCursor::default();
        cursor.written(cursor.mark(true));
        cursor
    }

    #[test]
    fn a_session_that_just_started_writes_a_snapshot_first() {
        let mut cursor = JournalCursor::default();
        cursor.appended();
        assert_eq!(cursor.record_size(1), None);
        cursor.written(cursor.mark(true));
        cursor.appended();
        cursor.appended();
        assert_eq!(cursor.record_size(3), Some(2));
    }

    #[test]
    fn a_record_holds_what_no_successful_write_stored() {
        let mut cursor = stored_snapshot();
        cursor.appended();
        let in_flight = cursor.mark(false);
        cursor.appended();
        cursor.appended();
        assert_eq!(
            cursor.record_size(10),
            Some(3),
            "the write in flight is not stored yet"
        );
        cursor.written(in_flight);
        assert_eq!(cursor.record_size(10), Some(2));
    }

    #[test]
    fn every_so_many_records_the_write_is_a_snapshot_again() {
        let mut cursor = stored_snapshot();
        for _ in 0..RECORDS_PER_SNAPSHOT {
            cursor.appended();
            assert_eq!(cursor.record_size(40), Some(1));
            cursor.written(cursor.mark(false));
        }
        assert!(cursor.has_records());
        cursor.appended();
        assert_eq!(cursor.record_size(40), None);
        cursor.written(cursor.mark(true));
        assert!(!cursor.has_records());
    }

    #[test]
    fn a_failure_or_a_rewrite_makes_the_next_write_a_snapshot() {
        let mut cursor = stored_snapshot();
        cursor.appended();
        cursor.write_failed();
        assert_eq!(cursor.record_size(40), None);
        cursor.written(cursor.mark(true));
        cursor.appended();
        assert_eq!(cursor.record_size(40), Some(1));
        cursor.rewritten();
        assert_eq!(cursor.record_size(40), None);
    }

    #[test]
    fn a_rewrite_during_a_snapshot_write_still_needs_a_snapshot() {
        let mut cursor = JournalCursor::default();
        let in_flight = cursor.mark(true);
        cursor.rewritten();
        cursor.written(in_flight);
        assert_eq!(cursor.record_size(40), None);
    }

    #[test]
    fn entries_that_left_the_window_unstored_need_a_snapshot() {
        let mut cursor = stored_snapshot();
        for _ in 0..5 {
            cursor.appended();
        }
        assert_eq!(cursor.record_size(4), None);
        assert_eq!(cursor.record_size(5), Some(5));
    }
}
