//! The cluster's [`RunRouter`], over NATS request and reply: the holder of partition `p`
//! answers on `troupe.workflow.p.<p>` for as long as it holds it ([`hold_partition`]).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::engine::Control;
use crate::events::ArrivedMessage;
use crate::journal::RunSummary;
use crate::placement::{PartitionReply, PartitionRequest, RunRouter, partition_of};
use crate::runs::{WorkflowError, WorkflowErrorCode, Workflows};

const PARTITION_SUBJECTS: &str = "troupe.workflow.p";
/// The longest a request waits for a holder's answer (a cancel waits for the run to stop).
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// Pause before a failed subscription is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

fn subject(partition: u32) -> String {
    format!("{PARTITION_SUBJECTS}.{partition}")
}

/// Reaches partition holders through NATS.
#[derive(Clone, Debug)]
pub struct NatsRunRouter {
    client: async_nats::Client,
}

impl NatsRunRouter {
    pub fn new(client: async_nats::Client) -> Self {
        Self { client }
    }

    async fn request(
        &self,
        run: &str,
        request: &PartitionRequest,
    ) -> Result<PartitionReply, WorkflowError> {
        let payload = serde_json::to_vec(request).map_err(|error| unavailable(&error))?;
        let asked = self
            .client
            .request(subject(partition_of(run)), payload.into());
        // No holder (between one node's loss and the next taking over) reads as not
        // running: the caller may try again.
        let answer = tokio::time::timeout(REQUEST_LIMIT, asked)
            .await
            .map_err(|_| WorkflowError::NotRunning)?
            .map_err(|_| WorkflowError::NotRunning)?;
        serde_json::from_slice(&answer.payload).map_err(|error| unavailable(&error))
    }
}

fn unavailable(error: &dyn std::error::Error) -> WorkflowError {
    WorkflowError::Remote {
        code: WorkflowErrorCode::Unavailable,
        message: format!("the run's node could not be asked: {error}"),
    }
}

#[async_trait::async_trait]
impl RunRouter for NatsRunRouter {
    async fn wake(&self, run: &str) -> Result<bool, WorkflowError> {
        let request = PartitionRequest::Wake {
            run: run.to_owned(),
        };
        match self.request(run, &request).await? {
            PartitionReply::Woken { taken } => Ok(taken),
            PartitionReply::Refused { error } => Err(error.into()),
            _ => Err(WorkflowError::NotRunning),
        }
    }

    async fn offer(&self, run: &str, message: ArrivedMessage) -> Result<bool, WorkflowError> {
        match self
            .request(run, &PartitionRequest::Offer { message })
            .await?
        {
            PartitionReply::Offered { taken } => Ok(taken),
            PartitionReply::Refused { error } => Err(error.into()),
            _ => Err(WorkflowError::NotRunning),
        }
    }

    async fn control(&self, run: &str, control: Control) -> Result<RunSummary, WorkflowError> {
        let request = PartitionRequest::Control {
            run: run.to_owned(),
            control,
        };
        match self.request(run, &request).await? {
            PartitionReply::Controlled { summary } => Ok(summary),
            PartitionReply::Refused { error } => Err(error.into()),
            _ => Err(WorkflowError::NotRunning),
        }
    }
}

/// Holds `partition` on this node until `stop`: takes up its unfinished runs, runs those
/// started anywhere, and answers the requests for them; then lets them go (they stop where
/// they are, for the next holder to take up).
pub async fn hold_partition(
    workflows: Workflows,
    client: async_nats::Client,
    partition: u32,
    stop: CancellationToken,
) {
    // Subscribed first, so that a run started while the partition's runs are read is woken.
    let mut requests = loop {
        match client.subscribe(subject(partition)).await {
            Ok(subscription) => break subscription,
            Err(error) => {
                tracing::warn!(partition, %error, "cannot answer for a workflow partition yet");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    };
    if let Err(error) = workflows.hold(partition).await {
        tracing::error!(partition, %error, "could not take up a workflow partition");
        return;
    }
    // The singleton drops this future when it moves: the partition goes with it.
    let _holding = Holding {
        workflows: workflows.clone(),
        partition,
    };
    tracing::info!(partition, "holding a workflow partition");
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = requests.next() => message,
        };
        let Some(message) = message else { break };
        tokio::spawn(answer(workflows.clone(), client.clone(), message));
    }
}

/// Lets its partition go when dropped, however the holding ends.
struct Holding {
    workflows: Workflows,
    partition: u32,
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.workflows.release_now(self.partition);
    }
}

async fn answer(workflows: Workflows, client: async_nats::Client, message: async_nats::Message) {
    let Some(reply_to) = message.reply else {
        return;
    };
    let reply = match serde_json::from_slice::<PartitionRequest>(&message.payload) {
        Ok(PartitionRequest::Wake { run }) => match workflows.wake(&run).await {
            Ok(taken) => PartitionReply::Woken { taken },
            Err(error) => PartitionReply::Refused {
                error: (&error).into(),
            },
        },
        Ok(PartitionRequest::Control { run, control }) => {
            match workflows.control_here(&run, control).await {
                Ok(summary) => PartitionReply::Controlled { summary },
                Err(error) => PartitionReply::Refused {
                    error: (&error).into(),
                },
            }
        }
        Ok(PartitionRequest::Offer { message }) => PartitionReply::Offered {
            taken: workflows.replies().offer(&message),
        },
        Err(error) => {
            tracing::warn!(%error, "an unreadable workflow partition request");
            return;
        }
    };
    match serde_json::to_vec(&reply) {
        Ok(bytes) => {
            if let Err(error) = client.publish(reply_to, bytes.into()).await {
                tracing::debug!(%error, "could not answer a workflow partition request");
            }
        }
        Err(error) => tracing::error!(%error, "could not encode a workflow partition answer"),
    }
}
