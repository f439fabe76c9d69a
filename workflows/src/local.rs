//! The workflow store of a single node: `workflows.redb` in the data directory, opened on
//! first use. An append puts the record and the run's new summary in one durable (fsync'd)
//! transaction; the appends of runs going on at once share their transactions (group
//! commit, on the store's own writer thread).

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use troupe_actors::group_commit::{GroupCommit, Write, WriteError};
use troupe_actors::storage::Storage;

use crate::journal::{JournalError, Record, RunSummary, ScheduleState, WorkflowStore};

const JOURNAL: TableDefinition<'_, (&str, u32), &[u8]> =
    TableDefinition::new("workflow_journal_v1");
const RUNS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("workflow_runs_v1");
const SCHEDULES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("workflow_schedules_v1");
/// redb's page cache: journals are read once, when a run resumes or is shown.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// Most appends folded into one transaction.
const MAX_APPENDS_PER_COMMIT: usize = 256;

/// One journal record and the run's summary after it.
struct Append {
    run: String,
    seq: u32,
    record: Vec<u8>,
    summary: Vec<u8>,
}

impl Write for Append {
    type Output = ();

    fn apply(&self, transaction: &WriteTransaction) -> Result<(), WriteError> {
        let mut journal = transaction.open_table(JOURNAL)?;
        journal.insert((self.run.as_str(), self.seq), self.record.as_slice())?;
        let mut runs = transaction.open_table(RUNS)?;
        runs.insert(self.run.as_str(), self.summary.as_slice())?;
        Ok(())
    }
}

/// `workflows.redb`.
#[derive(Debug)]
pub struct LocalWorkflowStore {
    storage: Storage,
    writer: GroupCommit<Append>,
}

fn prepare(transaction: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    transaction.open_table(JOURNAL)?;
    transaction.open_table(RUNS)?;
    transaction.open_table(SCHEDULES).map(drop)
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> JournalError {
    JournalError::Storage(Box::new(error))
}

impl LocalWorkflowStore {
    /// The store in `data_dir` (the file is created with the first write), with its
    /// writer thread.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let storage = Storage::lazy(
            "workflows",
            &data_dir.join("workflows.redb"),
            CACHE_BYTES,
            prepare,
        );
        let writer = GroupCommit::start("workflows", storage.clone(), MAX_APPENDS_PER_COMMIT)?;
        Ok(Self { storage, writer })
    }

    /// The store's database, for health reports next to the other stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    async fn blocking<T: Send + 'static>(
        &self,
        create: bool,
        absent: T,
        work: impl FnOnce(&Database) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            if create {
                return storage.run(work).map_err(failed)?;
            }
            storage
                .run_existing(work)
                .map_err(failed)?
                .unwrap_or(Ok(absent))
        })
        .await
        .map_err(failed)?
    }
}

#[async_trait::async_trait]
impl WorkflowStore for LocalWorkflowStore {
    async fn append(
        &self,
        run: &str,
        seq: u32,
        record: Vec<u8>,
        summary: &RunSummary,
    ) -> Result<(), JournalError> {
        let append = Append {
            run: run.to_owned(),
            seq,
            record,
            summary: serde_json::to_vec(summary).map_err(JournalError::Corrupt)?,
        };
        self.writer.submit(append).await.map_err(failed)
    }

    async fn records(&self, run: &str) -> Result<Vec<Record>, JournalError> {
        let run = run.to_owned();
        self.blocking(false, Vec::new(), move |database| {
            let transaction = database.begin_read().map_err(failed)?;
            let journal = transaction.open_table(JOURNAL).map_err(failed)?;
            let mut records = Vec::new();
            for entry in journal
                .range((run.as_str(), 0)..=(run.as_str(), u32::MAX))
                .map_err(failed)?
            {
                let (_, value) = entry.map_err(failed)?;
                records.push(serde_json::from_slice(value.value()).map_err(JournalError::Corrupt)?);
            }
            Ok(records)
        })
        .await
    }

    async fn summaries(&self) -> Result<Vec<RunSummary>, JournalError> {
        self.blocking(false, Vec::new(), |database| {
            let transaction = database.begin_read().map_err(failed)?;
            let runs = transaction.open_table(RUNS).map_err(failed)?;
            let mut summaries = Vec::new();
            for entry in runs.iter().map_err(failed)? {
                let (_, value) = entry.map_err(failed)?;
                summaries
                    .push(serde_json::from_slice(value.value()).map_err(JournalError::Corrupt)?);
            }
            Ok(summaries)
        })
        .await
    }

    async fn schedule(&self, key: &str) -> Result<ScheduleState, JournalError> {
        let key = key.to_owned();
        self.blocking(false, ScheduleState::default(), move |database| {
            let transaction = database.begin_read().map_err(failed)?;
            let schedules = transaction.open_table(SCHEDULES).map_err(failed)?;
            match schedules.get(key.as_str()).map_err(failed)? {
                Some(value) => serde_json::from_slice(value.value()).map_err(JournalError::Corrupt),
                None => Ok(ScheduleState::default()),
            }
        })
        .await
    }

    async fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        self.blocking(false, 0, move |database| {
            let transaction = database.begin_write().map_err(failed)?;
            let pruned = {
                let mut runs = transaction.open_table(RUNS).map_err(failed)?;
                let mut ended = Vec::new();
                for entry in runs.iter().map_err(failed)? {
                    let (key, value) = entry.map_err(failed)?;
                    let summary: RunSummary =
                        serde_json::from_slice(value.value()).map_err(JournalError::Corrupt)?;
                    if summary.status.is_over() && summary.updated_ms < before_ms {
                        ended.push(key.value().to_owned());
                    }
                }
                let mut journal = transaction.open_table(JOURNAL).map_err(failed)?;
                for run in &ended {
                    runs.remove(run.as_str()).map_err(failed)?;
                    journal
                        .retain_in((run.as_str(), 0)..=(run.as_str(), u32::MAX), |_, _| false)
                        .map_err(failed)?;
                }
                ended.len()
            };
            transaction.commit().map_err(failed)?;
            Ok(pruned)
        })
        .await
    }

    async fn set_schedule(&self, key: &str, state: &ScheduleState) -> Result<(), JournalError> {
        let key = key.to_owned();
        let bytes = serde_json::to_vec(state).map_err(JournalError::Corrupt)?;
        self.blocking(true, (), move |database| {
            let transaction = database.begin_write().map_err(failed)?;
            {
                let mut schedules = transaction.open_table(SCHEDULES).map_err(failed)?;
                schedules
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(failed)?;
            }
            transaction.commit().map_err(failed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::journal::{Cause, RunJournal, RunStatus};

    async fn run(store: &std::sync::Arc<LocalWorkflowStore>, id: &str, at: i64, ends: bool) {
        let summary = RunSummary::starting(id, "w", Cause::Manual { by: "t".into() }, at);
        let journal = RunJournal::new(
            std::sync::Arc::clone(store) as std::sync::Arc<dyn WorkflowStore>,
            summary,
            crate::journal::DEFAULT_JOURNAL_LIMIT,
        );
        let started = Record::Started {
            workflow: "w".into(),
            input: serde_json::Map::new(),
            cause: Cause::Manual { by: "t".into() },
            definitions: Vec::new(),
            at,
        };
        journal.append(&started).await.unwrap();
        if ends {
            let end = Record::Finished {
                at,
                output: json!(1),
            };
            journal.append(&end).await.unwrap();
        }
    }

    #[tokio::test]
    async fn records_and_summaries_survive_a_reopen_and_old_ended_runs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalWorkflowStore::open(dir.path()).unwrap());
        assert!(
            store.summaries().await.unwrap().is_empty(),
            "nothing, and no file yet"
        );
        assert!(!dir.path().join("workflows.redb").exists());
        run(&store, "w.old", 1_000, true).await;
        run(&store, "w.going", 1_000, false).await;
        run(&store, "w.new", 9_000, true).await;
        drop(store);

        let store = LocalWorkflowStore::open(dir.path()).unwrap();
        assert_eq!(store.records("w.old").await.unwrap().len(), 2);
        assert_eq!(store.summaries().await.unwrap().len(), 3);
        assert_eq!(store.prune(5_000).await.unwrap(), 1);
        assert!(store.records("w.old").await.unwrap().is_empty());
        let mut left: Vec<(String, RunStatus)> = store
            .summaries()
            .await
            .unwrap()
            .into_iter()
            .map(|summary| (summary.run, summary.status))
            .collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            left,
            [
                ("w.going".into(), RunStatus::Running),
                ("w.new".into(), RunStatus::Finished)
            ],
            "a run still going is kept however old"
        );
        assert_eq!(store.records("w.new").await.unwrap().len(), 2);
    }
}
