//! Usage on one node: `usage.redb` in the data dir, one record per turn and model, written
//! by a group-committing writer (many turns ending together cost one fsync).

use std::path::Path;

use redb::{TableDefinition, WriteTransaction};

use super::{Appended, UsageError, UsageLedger, UsageRecord};
use crate::group_commit::{CommitFailed, GroupCommit, Write, WriteError};
use crate::storage::Storage;

/// `(unix second, unique id)` → the record (bincode).
const RECORDS: TableDefinition<'_, (u64, u128), &[u8]> = TableDefinition::new("usage_v1");
/// redb's page cache: the records are read once, at start.
const CACHE_BYTES: usize = 1024 * 1024;
/// The most turns' records one commit takes.
const MAX_WRITES_PER_COMMIT: usize = 256;

/// One turn's records, appended.
struct Append(Vec<(u64, u128, Vec<u8>)>);

impl Write for Append {
    type Output = ();

    fn apply(&self, transaction: &WriteTransaction) -> Result<(), WriteError> {
        let mut table = transaction.open_table(RECORDS)?;
        for (at, id, bytes) in &self.0 {
            table.insert((*at, *id), bytes.as_slice())?;
        }
        Ok(())
    }
}

/// The usage ledger of a single node.
pub struct LocalUsageLedger {
    storage: Storage,
    writer: GroupCommit<Append>,
}

impl LocalUsageLedger {
    /// `usage.redb` in `data_dir`, created at the first record kept.
    pub fn open(data_dir: &Path) -> Result<Self, UsageError> {
        let storage = Storage::lazy(
            "usage",
            &data_dir.join("usage.redb"),
            CACHE_BYTES,
            |transaction| transaction.open_table(RECORDS).map(drop),
        );
        let writer = GroupCommit::start("usage", storage.clone(), MAX_WRITES_PER_COMMIT)
            .map_err(UsageError::store)?;
        Ok(Self { storage, writer })
    }

    /// The database, for health reports next to the other stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

fn encode(record: &UsageRecord) -> Result<Vec<u8>, UsageError> {
    bincode::serde::encode_to_vec(record, bincode::config::standard()).map_err(UsageError::store)
}

fn read_since(storage: &Storage, since: u64) -> Result<Vec<UsageRecord>, UsageError> {
    let read = storage.run_existing(|database| {
        let transaction = database.begin_read().map_err(UsageError::store)?;
        let table = transaction.open_table(RECORDS).map_err(UsageError::store)?;
        let mut records = Vec::new();
        for entry in table.range((since, 0)..).map_err(UsageError::store)? {
            let (_, bytes) = entry.map_err(UsageError::store)?;
            let (record, _) =
                bincode::serde::decode_from_slice(bytes.value(), bincode::config::standard())
                    .map_err(UsageError::Corrupt)?;
            records.push(record);
        }
        Ok::<_, UsageError>(records)
    });
    match read.map_err(UsageError::store)? {
        Some(records) => records,
        None => Ok(Vec::new()),
    }
}

#[async_trait::async_trait]
impl UsageLedger for LocalUsageLedger {
    fn append(&self, records: Vec<UsageRecord>) -> Appended {
        let encoded = records
            .iter()
            .map(|record| Ok((record.at, uuid::Uuid::new_v4().as_u128(), encode(record)?)))
            .collect::<Result<Vec<_>, UsageError>>();
        let queued = encoded.map(|encoded| self.writer.enqueue(Append(encoded)));
        Box::pin(async move {
            queued?
                .await
                .map_err(|error: CommitFailed| UsageError::store(error))
        })
    }

    async fn since(&self, since: u64) -> Result<Vec<UsageRecord>, UsageError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || read_since(&storage, since))
            .await
            .map_err(UsageError::store)?
    }
}
