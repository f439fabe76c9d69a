//! Reading a JetStream stream's messages to its current end, once: how a node loads what a
//! stream holds before it follows what comes next.

use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{Consumer, pull};
use futures_util::StreamExt;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a stream operation could not do, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what}: {source}")]
pub(crate) struct StreamError {
    pub(crate) what: &'static str,
    #[source]
    pub(crate) source: BoxError,
}

/// Hands `each` every message `consumer` has pending, in order, with its stream sequence,
/// until the last, within `limit`. `failed` turns a failure into the caller's error.
pub(crate) async fn read_to_end<E>(
    consumer: Consumer<pull::OrderedConfig>,
    limit: Duration,
    mut each: impl FnMut(&Message, u64) -> Result<(), E>,
    failed: impl Fn(BoxError) -> E,
) -> Result<(), E> {
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| failed(error.into()))?;
    let read = async {
        while let Some(message) = messages.next().await {
            let message = message.map_err(|error| failed(error.into()))?;
            let info = message.info().map_err(&failed)?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            each(&message, sequence)?;
            if pending == 0 {
                return Ok(());
            }
        }
        Err(failed("the stream ended while reading".into()))
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|elapsed| failed(elapsed.into()))?
}
