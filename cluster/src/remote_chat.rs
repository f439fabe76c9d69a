//! A chat model one node runs, answering the sessions of every node: a node whose
//! `kind = "local"` model file is here serves that provider over NATS, and a node that
//! lacks the file asks it through a [`ClusterChatProvider`].
//!
//! - **Start.** The asking node subscribes to an inbox for the reply's events, then sends
//!   the request (the whole [`ChatRequest`], JSON) to `troupe.v1.models.chat.<model as
//!   hex>`, queue group `troupe-models`. One serving node accepts it at once; with none,
//!   the call fails `unavailable` at once (and the model worker falls back).
//! - **Stream.** The serving node runs its provider and publishes each piece of text, then
//!   the completion or the error (its kind kept), in order, to the inbox.
//! - **Stop.** When the asking call is dropped (the person stopped the turn, or it timed
//!   out) it publishes to `<inbox>.stop`, and the serving node drops its call, which stops
//!   the generation at the next token. A serving node that dies leaves the call to the
//!   model worker's timeout.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use troupe_actors::provider::{
    ChatRequest, Completion, DeltaSink, ModelProvider, ProviderError, ProviderErrorKind,
    ProviderInfo,
};

use crate::subjects;

/// The longest the start of a call waits for a serving node to accept it.
const ACCEPT_LIMIT: Duration = Duration::from_secs(10);

fn stop_subject(events: &str) -> String {
    format!("{events}.stop")
}

/// A call to the serving node: sent borrowing the caller's request (`R = &ChatRequest`,
/// so the history is not copied), read owning it.
#[derive(Debug, Serialize, Deserialize)]
struct ChatCall<R = ChatRequest> {
    request: R,
    /// Where the reply's events go.
    events: String,
}

/// One event of a reply, in order.
#[derive(Debug, Serialize, Deserialize)]
enum ChatEvent {
    Delta(String),
    Done(Completion),
    Failed(ProviderError),
}

/// JSON: a request holds tool schemas (free-form JSON) and fields left out when empty,
/// which a compact binary form cannot carry.
fn encode<T: Serialize>(value: &T) -> Option<bytes::Bytes> {
    serde_json::to_vec(value).ok().map(Into::into)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

/// Serves `provider` (running model `model` here) to the other nodes until the connection
/// closes.
pub async fn serve_chat_model(
    client: async_nats::Client,
    provider: Arc<dyn ModelProvider>,
    model: &str,
) -> Result<(), async_nats::SubscribeError> {
    let mut calls = client
        .queue_subscribe(
            subjects::chat(model),
            subjects::MODELS_QUEUE_GROUP.to_owned(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(message) = calls.next().await {
            let (Some(reply_to), Some(call)) =
                (message.reply, decode::<ChatCall>(&message.payload))
            else {
                tracing::warn!("a chat call from another node could not be read");
                continue;
            };
            let (client, provider) = (client.clone(), Arc::clone(&provider));
            tokio::spawn(answer(client, provider, reply_to, call));
        }
    });
    Ok(())
}

/// Accepts `call`, runs it, and streams its events until it ends or is stopped.
async fn answer(
    client: async_nats::Client,
    provider: Arc<dyn ModelProvider>,
    reply_to: async_nats::Subject,
    call: ChatCall,
) {
    let Ok(mut stop) = client.subscribe(stop_subject(&call.events)).await else {
        return;
    };
    if client.publish(reply_to, bytes::Bytes::new()).await.is_err() {
        return;
    }
    let (events, mut outgoing) = mpsc::unbounded_channel::<ChatEvent>();
    let publisher = {
        let (client, subject) = (client.clone(), call.events.clone());
        tokio::spawn(async move {
            while let Some(event) = outgoing.recv().await {
                let Some(payload) = encode(&event) else {
                    continue;
                };
                if client.publish(subject.clone(), payload).await.is_err() {
                    return;
                }
            }
        })
    };
    let deltas = {
        let events = events.clone();
        DeltaSink::new(move |text| {
            let _ = events.send(ChatEvent::Delta(text.to_owned()));
        })
    };
    tokio::select! {
        result = provider.complete(&call.request, &deltas) => {
            let _ = events.send(match result {
                Ok(completion) => ChatEvent::Done(completion),
                Err(error) => ChatEvent::Failed(error),
            });
        }
        _ = stop.next() => {
            tracing::debug!("a chat call from another node was stopped");
        }
    }
    drop((events, deltas));
    let _ = publisher.await;
}

/// A chat model another node of the cluster runs.
pub struct ClusterChatProvider {
    client: async_nats::Client,
    info: ProviderInfo,
    subject: String,
}

impl ClusterChatProvider {
    /// Provider `name`, answered by the nodes that run `model`.
    pub fn new(client: async_nats::Client, name: &str, model: &str) -> Self {
        Self {
            client,
            info: ProviderInfo {
                name: name.to_owned(),
                kind: "local".to_owned(),
                model: model.to_owned(),
            },
            subject: subjects::chat(model),
        }
    }

    fn error(&self, kind: ProviderErrorKind, message: impl std::fmt::Display) -> ProviderError {
        ProviderError::new(
            kind,
            &self.info.name,
            format!("the model `{}` on another node: {message}", self.info.model),
        )
    }
}

/// Tells the serving node to stop when the call is dropped before its end.
struct StopOnDrop {
    client: async_nats::Client,
    subject: Option<String>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(subject) = self.subject.take() {
            let client = self.client.clone();
            tokio::spawn(async move {
                // Flushed at once: nothing else may be sent on this connection soon.
                if client.publish(subject, bytes::Bytes::new()).await.is_ok() {
                    let _ = client.flush().await;
                }
            });
        }
    }
}

#[async_trait::async_trait]
impl ModelProvider for ClusterChatProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        let inbox = self.client.new_inbox();
        let mut events = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|error| self.error(ProviderErrorKind::Network, error))?;
        let call = ChatCall {
            request,
            events: inbox.clone(),
        };
        let payload = encode(&call).ok_or_else(|| {
            self.error(
                ProviderErrorKind::BadRequest,
                "the request could not be sent",
            )
        })?;
        let start = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(ACCEPT_LIMIT));
        self.client
            .send_request(self.subject.clone(), start)
            .await
            .map_err(|error| match error.kind() {
                async_nats::RequestErrorKind::NoResponders => self.error(
                    ProviderErrorKind::Unavailable,
                    "no node of the cluster runs it",
                ),
                async_nats::RequestErrorKind::TimedOut => self.error(
                    ProviderErrorKind::Timeout,
                    "no node accepted the call in time",
                ),
                _ => self.error(ProviderErrorKind::Network, error),
            })?;
        let mut stop = StopOnDrop {
            client: self.client.clone(),
            subject: Some(stop_subject(&inbox)),
        };
        while let Some(message) = events.next().await {
            match decode::<ChatEvent>(&message.payload) {
                Some(ChatEvent::Delta(text)) => deltas.push(&text),
                Some(ChatEvent::Done(completion)) => {
                    stop.subject = None;
                    return Ok(completion);
                }
                Some(ChatEvent::Failed(error)) => {
                    stop.subject = None;
                    return Err(error);
                }
                None => {
                    return Err(
                        self.error(ProviderErrorKind::Protocol, "an event could not be read")
                    );
                }
            }
        }
        Err(self.error(ProviderErrorKind::Network, "the connection closed"))
    }
}

#[cfg(test)]
#[path = "remote_chat_tests.rs"]
mod tests;
