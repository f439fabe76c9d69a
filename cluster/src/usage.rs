//! Token accounting in a cluster: every node's usage records in one JetStream stream, so
//! that each node's usage book holds the whole cluster's turns: reports answer for the
//! cluster from any node, and a person's daily budget holds wherever their conversations
//! run.
//!
//! - **One message per record**, JSON, on `troupe.v1.usage.<node as hex>` of
//!   `TROUPE_USAGE`, kept 400 days.
//! - **Loaded, then followed.** At start a node reads the stream whole (its own records of
//!   before a restart included); from the last sequence read on, it follows the stream and
//!   adds the records other nodes keep. Its own it counts as it makes them, so none is
//!   counted twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{Context, stream};
use futures_util::StreamExt;
use troupe_actors::usage::{Appended, RecordSink, UsageError, UsageLedger, UsageRecord};

use crate::stream_read::{BoxError, StreamError};
use crate::subjects::{self, USAGE as SUBJECTS, USAGE_STREAM as STREAM};

/// How long records are kept.
const KEPT_FOR: Duration = Duration::from_secs(400 * 24 * 3600);
/// The longest the load at start waits for the stream.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

fn failed(what: &'static str, source: impl Into<BoxError>) -> UsageError {
    UsageError::store(StreamError {
        what,
        source: source.into(),
    })
}

/// The usage records of the whole cluster. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamUsageLedger {
    jetstream: Context,
    stream: stream::Stream,
    /// This node's subject: what the follower skips.
    own_subject: Arc<str>,
    /// The last stream sequence the load read.
    loaded_through: Arc<AtomicU64>,
}

impl JetStreamUsageLedger {
    /// Prepares the stream (created if missing) for node `node_id`.
    pub(crate) async fn open(
        jetstream: &Context,
        storage: stream::StorageType,
        replicas: usize,
        node_id: &str,
    ) -> Result<Self, UsageError> {
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![format!("{SUBJECTS}.>")],
                max_age: KEPT_FOR,
                storage,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("prepare the usage stream", error))?;
        Ok(Self {
            jetstream: jetstream.clone(),
            stream,
            own_subject: format!("{SUBJECTS}.{}", subjects::hex_token(node_id)).into(),
            loaded_through: Arc::default(),
        })
    }
}

fn decode(payload: &[u8]) -> Option<UsageRecord> {
    serde_json::from_slice(payload)
        .inspect_err(|error| tracing::warn!(%error, "an unreadable usage record was skipped"))
        .ok()
}

#[async_trait::async_trait]
impl UsageLedger for JetStreamUsageLedger {
    fn append(&self, records: Vec<UsageRecord>) -> Appended {
        let (jetstream, subject) = (self.jetstream.clone(), Arc::clone(&self.own_subject));
        Box::pin(async move {
            for record in &records {
                let payload = serde_json::to_vec(record).map_err(UsageError::store)?;
                jetstream
                    .publish(subject.to_string(), payload.into())
                    .await
                    .map_err(|error| failed("keep a turn's usage", error))?
                    .await
                    .map_err(|error| failed("keep a turn's usage", error))?;
            }
            Ok(())
        })
    }

    async fn since(&self, since: u64) -> Result<Vec<UsageRecord>, UsageError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{SUBJECTS}.>"),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("read the usage stream", error))?;
        let mut records = Vec::new();
        crate::stream_read::read_to_end(
            consumer,
            LOAD_LIMIT,
            |message, sequence| {
                self.loaded_through.fetch_max(sequence, Ordering::AcqRel);
                if let Some(record) = decode(&message.payload).filter(|record| record.at >= since) {
                    records.push(record);
                }
                Ok(())
            },
            |error| failed("read the usage stream", error),
        )
        .await?;
        Ok(records)
    }

    fn follow(&self, sink: RecordSink) {
        let (stream, own) = (self.stream.clone(), Arc::clone(&self.own_subject));
        let from = self.loaded_through.load(Ordering::Acquire) + 1;
        tokio::spawn(async move {
            let consumer = stream
                .create_consumer(pull::OrderedConfig {
                    filter_subject: format!("{SUBJECTS}.>"),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    },
                    ..Default::default()
                })
                .await;
            let mut messages = match consumer {
                Ok(consumer) => match consumer.messages().await {
                    Ok(messages) => messages,
                    Err(error) => return tracing::error!(%error, "cannot follow the usage stream"),
                },
                Err(error) => return tracing::error!(%error, "cannot follow the usage stream"),
            };
            while let Some(message) = messages.next().await {
                match message {
                    Ok(message) if *message.subject != *own => {
                        if let Some(record) = decode(&message.payload) {
                            sink(record);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "following the usage stream failed; retrying");
                    }
                }
            }
        });
    }
}
