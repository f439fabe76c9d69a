//! The workflow store of a cluster, in JetStream: every node reads and writes the same
//! journals, so a run whose node dies is taken up by another.
//!
//! - A run's journal is its own subject of the `TROUPE_WORKFLOWS` stream
//!   (`troupe.workflow.j.<run as hex>`, file storage, the cluster's replica count), one
//!   message per record, in order.
//! - Every append is fenced: it carries `Nats-Expected-Last-Subject-Sequence`, the stream
//!   sequence of the run's last record as this node knows it (0 for a run's start). A node
//!   that read a journal to take the run up ([`WorkflowStore::take_up`]) knows the latest; a
//!   node that lost the run still knows an older one, so its appends are refused
//!   ([`JournalError::Fenced`]) and it stops. Two nodes starting the same run id (the same
//!   schedule firing, the same webhook delivery) meet the same way: one start is stored.
//! - Run summaries and schedule states are keys of KV buckets (`troupe_workflow_runs`,
//!   `troupe_workflow_schedules`), written after the record they follow; a summary behind
//!   its journal is corrected by the journal whenever the run is read.

use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, Context, kv};
use dashmap::DashMap;
use futures_util::TryStreamExt;

use crate::journal::{JournalError, Record, RunSummary, ScheduleState, WorkflowStore};

/// The stream holding every run's journal.
pub const STREAM: &str = "TROUPE_WORKFLOWS";
const JOURNALS: &str = "troupe.workflow.j";
/// Run summaries, by run (hex).
pub const RUNS_BUCKET: &str = "troupe_workflow_runs";
/// Schedule states, by schedule key (hex).
pub const SCHEDULES_BUCKET: &str = "troupe_workflow_schedules";
/// A bucket's `max_age` that keeps values until they are deleted.
pub(crate) const FOR_EVER: std::time::Duration = std::time::Duration::ZERO;
/// The longest a journal's read waits for the stream.
const READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How the stream and buckets are kept; from `[cluster]`.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    pub replicas: usize,
    pub storage: stream::StorageType,
}

/// Journals, summaries and schedule states in the cluster's JetStream.
#[derive(Clone, Debug)]
pub struct JetStreamWorkflowStore {
    jetstream: Context,
    stream: stream::Stream,
    runs: kv::Store,
    schedules: kv::Store,
    /// The stream sequence of each run's last record, for the runs this node writes.
    last: Arc<DashMap<String, u64>>,
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> JournalError {
    JournalError::Storage(Box::new(error))
}

/// A bucket keeping each key's last value (for `max_age`; zero: for ever), created if
/// missing.
pub(crate) async fn bucket(
    jetstream: &Context,
    name: &str,
    settings: StreamSettings,
    max_age: std::time::Duration,
) -> Result<kv::Store, JournalError> {
    jetstream
        .create_key_value(kv::Config {
            bucket: name.to_owned(),
            history: 1,
            max_age,
            storage: settings.storage,
            num_replicas: settings.replicas,
            ..kv::Config::default()
        })
        .await
        .map_err(failed)
}

fn journal_subject(run: &str) -> String {
    // Run ids hold `.`, a subject's separator: hex keeps each run one token.
    format!("{JOURNALS}.{}", hex::encode(run))
}

impl JetStreamWorkflowStore {
    /// Prepares the stream and buckets (created if missing).
    pub async fn open(
        client: async_nats::Client,
        settings: StreamSettings,
    ) -> Result<Self, JournalError> {
        let jetstream = jetstream::new(client);
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{JOURNALS}.*")],
                storage: settings.storage,
                num_replicas: settings.replicas,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        Ok(Self {
            runs: bucket(&jetstream, RUNS_BUCKET, settings, FOR_EVER).await?,
            schedules: bucket(&jetstream, SCHEDULES_BUCKET, settings, FOR_EVER).await?,
            jetstream,
            stream,
            last: Arc::default(),
        })
    }

    /// The stream sequence of the last record on `subject` (`None`: no record).
    async fn last_sequence(&self, subject: &str) -> Result<Option<u64>, JournalError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message.sequence)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(failed(error)),
        }
    }

    /// A run's records and the stream sequence of the last (0: none).
    async fn read(&self, run: &str) -> Result<(Vec<Record>, u64), JournalError> {
        let subject = journal_subject(run);
        let Some(last) = self.last_sequence(&subject).await? else {
            return Ok((Vec::new(), 0));
        };
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        let mut messages = consumer.messages().await.map_err(failed)?;
        let mut records = Vec::new();
        let read = async {
            while let Some(message) = messages.try_next().await.map_err(failed)? {
                let sequence = message
                    .info()
                    .map_err(JournalError::Storage)?
                    .stream_sequence;
                records
                    .push(serde_json::from_slice(&message.payload).map_err(JournalError::Corrupt)?);
                if sequence >= last {
                    break;
                }
            }
            Ok::<_, JournalError>(())
        };
        tokio::time::timeout(READ_LIMIT, read)
            .await
            .map_err(failed)??;
        Ok((records, last))
    }
}

#[async_trait::async_trait]
impl WorkflowStore for JetStreamWorkflowStore {
    async fn append(
        &self,
        run: &str,
        seq: u32,
        record: Vec<u8>,
        summary: &RunSummary,
    ) -> Result<(), JournalError> {
        let expected = if seq == 0 {
            0
        } else {
            self.last.get(run).map_or(0, |last| *last)
        };
        let publish = PublishMessage::build()
            .payload(record.into())
            .expected_last_subject_sequence(expected);
        let stored = self
            .jetstream
            .send_publish(journal_subject(run), publish)
            .await
            .map_err(failed)?
            .await;
        let ack = match stored {
            Ok(ack) => ack,
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                self.last.remove(run);
                return Err(JournalError::Fenced(run.to_owned()));
            }
            Err(error) => return Err(failed(error)),
        };
        if summary.status.is_over() {
            self.last.remove(run);
        } else {
            self.last.insert(run.to_owned(), ack.sequence);
        }
        let summary = serde_json::to_vec(summary).map_err(JournalError::Corrupt)?;
        self.runs
            .put(hex::encode(run), summary.into())
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn records(&self, run: &str) -> Result<Vec<Record>, JournalError> {
        Ok(self.read(run).await?.0)
    }

    async fn take_up(&self, run: &str) -> Result<Vec<Record>, JournalError> {
        let (records, last) = self.read(run).await?;
        self.last.insert(run.to_owned(), last);
        Ok(records)
    }

    fn let_go(&self, run: &str) {
        self.last.remove(run);
    }

    async fn summaries(&self) -> Result<Vec<RunSummary>, JournalError> {
        // One pass over the bucket's last value per key, not a read per key: every node
        // lists the summaries each time a partition comes to it.
        // Fresh (the bucket's `status` is what it was when opened): a watch of an empty
        // bucket would wait for a first value.
        if self
            .runs
            .stream
            .get_info()
            .await
            .map_err(failed)?
            .state
            .messages
            == 0
        {
            return Ok(Vec::new());
        }
        let mut entries = self.runs.watch_with_history(">").await.map_err(failed)?;
        let mut summaries = Vec::new();
        let read = async {
            while let Some(entry) = entries.try_next().await.map_err(failed)? {
                if entry.operation == kv::Operation::Put {
                    summaries
                        .push(serde_json::from_slice(&entry.value).map_err(JournalError::Corrupt)?);
                }
                if entry.delta == 0 {
                    break;
                }
            }
            Ok::<_, JournalError>(())
        };
        tokio::time::timeout(READ_LIMIT, read)
            .await
            .map_err(failed)??;
        Ok(summaries)
    }

    async fn schedule(&self, key: &str) -> Result<ScheduleState, JournalError> {
        match self.schedules.get(hex::encode(key)).await.map_err(failed)? {
            Some(value) => serde_json::from_slice(&value).map_err(JournalError::Corrupt),
            None => Ok(ScheduleState::default()),
        }
    }

    async fn set_schedule(&self, key: &str, state: &ScheduleState) -> Result<(), JournalError> {
        let value = serde_json::to_vec(state).map_err(JournalError::Corrupt)?;
        self.schedules
            .put(hex::encode(key), value.into())
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        let ended: Vec<RunSummary> = self
            .summaries()
            .await?
            .into_iter()
            .filter(|summary| summary.status.is_over() && summary.updated_ms < before_ms)
            .collect();
        for summary in &ended {
            self.stream
                .purge()
                .filter(journal_subject(&summary.run))
                .await
                .map_err(failed)?;
            self.runs
                .purge(hex::encode(&summary.run))
                .await
                .map_err(failed)?;
        }
        Ok(ended.len())
    }
}

/// Sends claimed by a node, by idempotency key (hex).
pub const SENDS_BUCKET: &str = "troupe_workflow_sends";
/// How long a claimed send is remembered: longer than any run waits to be taken up.
const SEND_CLAIM_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The messages a cluster's workflow steps handed to a node's outbox. A send step claims
/// its idempotency key here before it hands its message over; a step replayed on another
/// node finds the claim and sends nothing again (the first node's outbox delivers it, also
/// after that node restarts).
#[derive(Clone, Debug)]
pub struct SendClaims {
    bucket: kv::Store,
}

impl SendClaims {
    /// The bucket, created if missing.
    pub async fn open(
        client: async_nats::Client,
        settings: StreamSettings,
    ) -> Result<Self, JournalError> {
        let jetstream = jetstream::new(client);
        Ok(Self {
            bucket: bucket(&jetstream, SENDS_BUCKET, settings, SEND_CLAIM_AGE).await?,
        })
    }

    /// Claims `key` for `node`; answers `false` when some node claimed it before.
    pub async fn claim(&self, key: &str, node: &str) -> Result<bool, JournalError> {
        match self
            .bucket
            .create(hex::encode(key), node.to_owned().into())
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(failed(error)),
        }
    }
}
