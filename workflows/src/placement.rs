//! Where runs go in a cluster. Runs are split by id into [`PARTITIONS`] partitions, and each
//! partition is held by exactly one node at a time (the binary makes each a cluster
//! singleton, placed like the session shards and moved when its node dies or drains). The
//! holder runs the partition's runs; any node may start a run, journal its start and wake
//! the holder, and pause, resume or cancel it through the holder ([`RunRouter`]).
//!
//! On one node there is no router and the node holds every partition.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Control;
use crate::events::ArrivedMessage;
use crate::journal::RunSummary;
use crate::runs::{WorkflowError, WorkflowErrorCode};

/// How many partitions runs are split into: enough to spread runs over a few nodes.
pub const PARTITIONS: u32 = 8;

/// The partition of run `run`: the same on every node and in every version.
pub fn partition_of(run: &str) -> u32 {
    let digest = Sha256::digest(run.as_bytes());
    let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    first % PARTITIONS
}

/// Reaches the node that holds a partition.
#[async_trait::async_trait]
pub trait RunRouter: Send + Sync + 'static {
    /// Tells the holder of `run`'s partition that the run's start is journaled; answers
    /// whether the holder took it up.
    async fn wake(&self, run: &str) -> Result<bool, WorkflowError>;
    /// Pauses, resumes or cancels `run` on the holder of its partition.
    async fn control(&self, run: &str, control: Control) -> Result<RunSummary, WorkflowError>;
    /// Offers `message` to the runs waiting for replies on the holder of `run`'s
    /// partition; answers whether one took it.
    async fn offer(&self, run: &str, message: ArrivedMessage) -> Result<bool, WorkflowError>;
}

/// A request to a partition's holder.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionRequest {
    Wake { run: String },
    Control { run: String, control: Control },
    Offer { message: ArrivedMessage },
}

/// A holder's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionReply {
    Woken { taken: bool },
    Controlled { summary: RunSummary },
    Offered { taken: bool },
    Refused { error: RemoteError },
}

/// A [`WorkflowError`] as it crosses the cluster: the kinds a caller tells apart keep
/// their kind, the others their code and message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteError {
    NoRun {
        run: String,
    },
    Ended {
        run: String,
    },
    NotRunning,
    Other {
        code: WorkflowErrorCode,
        message: String,
    },
}

impl From<&WorkflowError> for RemoteError {
    fn from(error: &WorkflowError) -> Self {
        match error {
            WorkflowError::NoRun(run) => Self::NoRun { run: run.clone() },
            WorkflowError::Ended(run) => Self::Ended { run: run.clone() },
            WorkflowError::NotRunning => Self::NotRunning,
            other => Self::Other {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}

impl From<RemoteError> for WorkflowError {
    fn from(error: RemoteError) -> Self {
        match error {
            RemoteError::NoRun { run } => Self::NoRun(run),
            RemoteError::Ended { run } => Self::Ended(run),
            RemoteError::NotRunning => Self::NotRunning,
            RemoteError::Other { code, message } => Self::Remote { code, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_spread_over_every_partition_and_keep_theirs() {
        let mut seen = std::collections::HashSet::new();
        for index in 0..200 {
            let run = format!("brief.{index}");
            let partition = partition_of(&run);
            assert!(partition < PARTITIONS);
            assert_eq!(partition, partition_of(&run));
            seen.insert(partition);
        }
        assert_eq!(seen.len(), PARTITIONS as usize);
    }

    #[test]
    fn errors_keep_their_kind_across_the_cluster() {
        let crossed = |error: WorkflowError| {
            let wire = serde_json::to_vec(&RemoteError::from(&error)).expect("encodes");
            WorkflowError::from(serde_json::from_slice::<RemoteError>(&wire).expect("decodes"))
        };
        assert!(
            matches!(crossed(WorkflowError::NoRun("a".into())), WorkflowError::NoRun(run) if run == "a")
        );
        assert!(
            matches!(crossed(WorkflowError::Ended("b".into())), WorkflowError::Ended(run) if run == "b")
        );
        assert!(matches!(
            crossed(WorkflowError::NotRunning),
            WorkflowError::NotRunning
        ));
        let storage = crossed(WorkflowError::Journal(
            crate::journal::JournalError::Fenced("c".into()),
        ));
        assert_eq!(storage.code(), WorkflowErrorCode::Storage);
        assert!(storage.to_string().contains("another node"), "{storage}");
    }
}
