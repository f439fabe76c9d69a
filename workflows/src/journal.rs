//! A run's journal: its inputs, every step's start and every step's result, each stored
//! before the run goes on. Replaying it gives back what the run did ([`Replayed`]), so a run
//! moved to another node, or started again after a crash, goes on from the first step
//! with no result and never runs a completed step again.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::definition::WorkflowDefinition;
use crate::effects::{StepError, StepErrorCode};

/// The default size limit of one run's journal.
pub const DEFAULT_JOURNAL_LIMIT: usize = 4 * 1024 * 1024;
/// Room kept under the limit for the record that ends the run.
const END_RESERVE: usize = 4 * 1024;

/// Why a run started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// `troupe workflow run`, the API or the `workflows` skill.
    Manual { by: String },
    /// A trigger of the workflow, for its firing due at `due_ms`.
    Schedule { trigger: usize, due_ms: i64 },
    /// A signed webhook call (trigger `trigger`).
    Webhook { trigger: usize },
    /// A message that matched trigger `trigger`'s pattern.
    Message {
        trigger: usize,
        platform: String,
        sender: String,
    },
}

impl Cause {
    /// The `cause` label of the runs-started metric.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Manual { .. } => "manual",
            Self::Schedule { .. } => "schedule",
            Self::Webhook { .. } => "webhook",
            Self::Message { .. } => "message",
        }
    }
}

/// The run id of an event (a webhook's `Idempotency-Key`, a message's id): the same event
/// delivered twice starts one run.
pub fn event_run_id(workflow: &str, kind: &str, event: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(event.as_bytes());
    format!("{workflow}.{kind}.{}", &hex::encode(digest)[..20])
}

/// One journal record. Times are unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The run began: its input, and the definitions it runs (its own first, then its
    /// sub-workflows), fixed for the whole run even if they are edited meanwhile.
    Started {
        workflow: String,
        input: Map<String, Value>,
        cause: Cause,
        definitions: Vec<WorkflowDefinition>,
        at: i64,
    },
    /// An attempt of a step began; `due` is when a wait ends.
    StepStarted {
        step: String,
        attempt: u32,
        at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<i64>,
    },
    StepFinished {
        step: String,
        attempt: u32,
        at: i64,
        output: Value,
    },
    /// An attempt failed; `retry_at` is when the next one begins, if any.
    StepFailed {
        step: String,
        attempt: u32,
        at: i64,
        error: StepError,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<i64>,
    },
    Paused {
        at: i64,
    },
    Resumed {
        at: i64,
    },
    Finished {
        at: i64,
        output: Value,
    },
    Failed {
        at: i64,
        error: StepError,
    },
    Cancelled {
        at: i64,
    },
}

impl Record {
    /// Whether the run ends with this record.
    pub fn is_end(&self) -> bool {
        matches!(
            self,
            Self::Finished { .. } | Self::Failed { .. } | Self::Cancelled { .. }
        )
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Paused,
    Finished,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_over(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }
}

/// A run at a glance, kept beside its journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: String,
    pub workflow: String,
    pub status: RunStatus,
    pub cause: Cause,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub steps_finished: u32,
    pub records: u32,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// A schedule's durable state: when it last fired, and the firings it missed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The due time of the last firing handled (run or recorded as missed), unix ms.
    pub last_due_ms: Option<i64>,
    /// Firings that were not run because the node was down past the catch-up window
    /// (the most recent ones, oldest first).
    #[serde(default)]
    pub missed: Vec<MissedFiring>,
}

/// A firing that did not run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissedFiring {
    pub trigger: usize,
    pub due_ms: i64,
    /// When the node noticed.
    pub noticed_ms: i64,
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the workflow store failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("a journal record is unreadable: {0}")]
    Corrupt(#[source] serde_json::Error),
    /// Another node wrote the run's journal since this one read it: the run has moved, and
    /// this node must not write for it any more.
    #[error("run `{0}` is written by another node now")]
    Fenced(String),
}

/// Where journals, run summaries and schedule states are kept: the local store on one
/// node, JetStream in a cluster.
#[async_trait::async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Stores record `seq` of `run` and its new summary, durably, in one write.
    async fn append(
        &self,
        run: &str,
        seq: u32,
        record: Vec<u8>,
        summary: &RunSummary,
    ) -> Result<(), JournalError>;
    /// A run's records in order (empty when it does not exist).
    async fn records(&self, run: &str) -> Result<Vec<Record>, JournalError>;
    /// A run's records, read by the node that is about to write its journal: in a cluster,
    /// from now on that node's appends are refused once any other node appends.
    async fn take_up(&self, run: &str) -> Result<Vec<Record>, JournalError> {
        self.records(run).await
    }
    /// This node stops writing `run`'s journal (it ended, or runs elsewhere now).
    fn let_go(&self, _run: &str) {}
    /// Every run's summary.
    async fn summaries(&self) -> Result<Vec<RunSummary>, JournalError>;
    /// The schedule state of `key` (`<workflow>`).
    async fn schedule(&self, key: &str) -> Result<ScheduleState, JournalError>;
    async fn set_schedule(&self, key: &str, state: &ScheduleState) -> Result<(), JournalError>;
    /// Deletes the journals and summaries of runs that ended before `before_ms`; answers
    /// how many.
    async fn prune(&self, before_ms: i64) -> Result<usize, JournalError>;
}

/// One run's journal, appended by that run only. Cheap to clone.
#[derive(Clone)]
pub struct RunJournal {
    store: Arc<dyn WorkflowStore>,
    limit: usize,
    state: Arc<Mutex<RunSummary>>,
}

impl RunJournal {
    /// The journal of the run `summary` describes (`records` and `bytes` say how much it
    /// holds already).
    pub fn new(store: Arc<dyn WorkflowStore>, summary: RunSummary, limit: usize) -> Self {
        Self {
            store,
            limit,
            state: Arc::new(Mutex::new(summary)),
        }
    }

    /// Appends `record`; on return it is stored. A record that would take the journal past
    /// its limit is refused (`journal_too_large`), except the one that ends the run.
    pub async fn append(&self, record: &Record) -> Result<(), StepError> {
        let bytes = serde_json::to_vec(record).map_err(|error| {
            StepError::new(
                StepErrorCode::Storage,
                format!("unencodable record: {error}"),
            )
        })?;
        let mut summary = self.state.lock().await;
        let room = if record.is_end() {
            self.limit
        } else {
            self.limit.saturating_sub(END_RESERVE)
        };
        let total = usize::try_from(summary.bytes).unwrap_or(usize::MAX) + bytes.len();
        if total > room {
            return Err(StepError::new(
                StepErrorCode::JournalTooLarge,
                format!(
                    "the run's journal would hold {total} bytes, over its limit of {} (workflows.journal_limit_bytes)",
                    self.limit
                ),
            ));
        }
        let mut next = summary.clone();
        next.apply(record, bytes.len());
        let seq = summary.records;
        self.store
            .append(&next.run, seq, bytes, &next)
            .await
            .map_err(|error| StepError::new(StepErrorCode::Storage, error.to_string()))?;
        *summary = next;
        Ok(())
    }

    pub async fn summary(&self) -> RunSummary {
        self.state.lock().await.clone()
    }
}

impl RunSummary {
    /// The summary of a run that has just `Started`.
    pub fn starting(run: &str, workflow: &str, cause: Cause, at: i64) -> Self {
        Self {
            run: run.to_owned(),
            workflow: workflow.to_owned(),
            status: RunStatus::Running,
            cause,
            started_ms: at,
            updated_ms: at,
            steps_finished: 0,
            records: 0,
            bytes: 0,
            error: None,
        }
    }

    fn apply(&mut self, record: &Record, bytes: usize) {
        self.records += 1;
        self.bytes += bytes as u64;
        match record {
            Record::Started { at, .. }
            | Record::StepStarted { at, .. }
            | Record::StepFailed { at, .. } => self.updated_ms = *at,
            Record::StepFinished { at, .. } => {
                self.updated_ms = *at;
                self.steps_finished += 1;
            }
            Record::Paused { at } => (self.updated_ms, self.status) = (*at, RunStatus::Paused),
            Record::Resumed { at } => (self.updated_ms, self.status) = (*at, RunStatus::Running),
            Record::Finished { at, .. } => {
                (self.updated_ms, self.status) = (*at, RunStatus::Finished);
            }
            Record::Failed { at, error } => {
                (self.updated_ms, self.status) = (*at, RunStatus::Failed);
                self.error = Some(error.clone());
            }
            Record::Cancelled { at } => {
                (self.updated_ms, self.status) = (*at, RunStatus::Cancelled);
            }
        }
    }

    /// The summary a journal's records give.
    pub fn replayed(records: &[Record], run: &str) -> Option<Self> {
        let Some(Record::Started {
            workflow,
            cause,
            at,
            ..
        }) = records.first()
        else {
            return None;
        };
        let mut summary = Self::starting(run, workflow, cause.clone(), *at);
        for record in records {
            let bytes = serde_json::to_vec(record).map_or(0, |encoded| encoded.len());
            summary.apply(record, bytes);
        }
        Some(summary)
    }
}

/// What a journal says each step did.
#[derive(Debug, Default)]
pub struct Replayed {
    steps: HashMap<String, StepRecord>,
}

/// One step's journaled history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRecord {
    /// The last attempt begun (0: none).
    pub attempt: u32,
    /// When the last attempt's wait ends.
    pub due: Option<i64>,
    pub output: Option<Value>,
    /// The last attempt failed: when the next begins (`None`: no more attempts).
    pub failed: Option<(StepError, Option<i64>)>,
}

impl Replayed {
    pub fn new(records: &[Record]) -> Self {
        let mut steps: HashMap<String, StepRecord> = HashMap::new();
        for record in records {
            match record {
                Record::StepStarted {
                    step, attempt, due, ..
                } => {
                    let entry = steps.entry(step.clone()).or_default();
                    entry.attempt = *attempt;
                    entry.due = *due;
                    entry.failed = None;
                }
                Record::StepFinished { step, output, .. } => {
                    steps.entry(step.clone()).or_default().output = Some(output.clone());
                }
                Record::StepFailed {
                    step,
                    error,
                    retry_at,
                    ..
                } => {
                    steps.entry(step.clone()).or_default().failed =
                        Some((error.clone(), *retry_at));
                }
                _ => {}
            }
        }
        Self { steps }
    }

    pub fn step(&self, path: &str) -> Option<&StepRecord> {
        self.steps.get(path)
    }
}
