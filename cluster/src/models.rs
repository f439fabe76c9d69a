//! Local models shared by the cluster: a node that runs an embedding model serves it to
//! every node over NATS, so a node without models (the static image, which cannot load
//! ONNX Runtime, or a small machine) embeds through one that has them.
//!
//! - **Serving.** A node with the model loaded subscribes to
//!   `troupe.v1.models.embed.<model as hex>` in the queue group `troupe-models`: each request
//!   goes to one of the nodes serving that model, whose pool batches it with its own work.
//! - **Asking.** [`ClusterEmbedder`] is an [`Embedder`] that sends the texts there and
//!   waits for the vectors. The model's name is in the subject, so vectors always come from
//!   the model named in the configuration, whichever node runs it (memories embedded by
//!   two different models would not compare).
//! - **Failures** keep their kind across the hop (busy, unavailable, failed), so a client
//!   gets the status it would get on the serving node. No node serving the model answers
//!   `unavailable` at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use troupe_actors::embedding::{EmbedError, EmbedFailure, Embedded, Embedder};

use crate::subjects;

/// The longest an embedding request waits for another node's model (its queue included).
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// What a serving node answers.
#[derive(Debug, Serialize, Deserialize)]
enum EmbedReply {
    Embedded(Vec<Embedded>),
    Failed {
        failure: EmbedFailure,
        message: String,
    },
}

fn encode<T: Serialize>(value: &T) -> Option<bytes::Bytes> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .ok()
        .map(Into::into)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(value, _)| value)
}

/// Serves `embedder` (a model this node runs) to the other nodes until the connection
/// closes.
pub async fn serve_embedder(
    client: async_nats::Client,
    embedder: Arc<dyn Embedder>,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = client
        .queue_subscribe(
            subjects::embed(embedder.model()),
            subjects::MODELS_QUEUE_GROUP.to_owned(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply_to) = request.reply else {
                continue;
            };
            let (client, embedder) = (client.clone(), Arc::clone(&embedder));
            tokio::spawn(async move {
                let reply = match decode::<Vec<String>>(&request.payload) {
                    Some(texts) => match embedder.embed(texts).await {
                        Ok(embedded) => EmbedReply::Embedded(embedded),
                        Err(error) => EmbedReply::Failed {
                            failure: error.failure(),
                            message: error.to_string(),
                        },
                    },
                    None => EmbedReply::Failed {
                        failure: EmbedFailure::Failed,
                        message: "the request could not be read".to_owned(),
                    },
                };
                if let Some(payload) = encode(&reply)
                    && let Err(error) = client.publish(reply_to, payload).await
                {
                    tracing::warn!(%error, "an embedding for another node could not be sent");
                }
            });
        }
    });
    Ok(())
}

/// Embeds with a model another node of the cluster runs.
pub struct ClusterEmbedder {
    client: async_nats::Client,
    model: String,
    subject: String,
}

impl ClusterEmbedder {
    pub fn new(client: async_nats::Client, model: &str) -> Self {
        Self {
            client,
            model: model.to_owned(),
            subject: subjects::embed(model),
        }
    }

    fn failed(&self, failure: EmbedFailure, message: impl std::fmt::Display) -> EmbedError {
        EmbedError::Peer {
            failure,
            message: format!("embedding with `{}`: {message}", self.model).into(),
        }
    }
}

#[async_trait::async_trait]
impl Embedder for ClusterEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedded>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let payload = encode(&texts)
            .ok_or_else(|| self.failed(EmbedFailure::Failed, "the texts could not be sent"))?;
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(REQUEST_LIMIT));
        let answer = self
            .client
            .send_request(self.subject.clone(), request)
            .await
            .map_err(|error| match error.kind() {
                async_nats::RequestErrorKind::NoResponders => self.failed(
                    EmbedFailure::Unavailable,
                    "no node of the cluster runs this model",
                ),
                async_nats::RequestErrorKind::TimedOut => {
                    self.failed(EmbedFailure::Busy, "no answer in time")
                }
                _ => self.failed(EmbedFailure::Failed, error),
            })?;
        match decode::<EmbedReply>(&answer.payload) {
            Some(EmbedReply::Embedded(embedded)) if embedded.len() == texts.len() => Ok(embedded),
            Some(EmbedReply::Embedded(embedded)) => Err(self.failed(
                EmbedFailure::Failed,
                format!("{} vectors for {} texts", embedded.len(), texts.len()),
            )),
            Some(EmbedReply::Failed { failure, message }) => Err(self.failed(failure, message)),
            None => Err(self.failed(EmbedFailure::Failed, "the answer could not be read")),
        }
    }
}

/// Waits until the server has read everything `client` sent before, its subscriptions
/// included (a flush only writes them out): a message to itself comes back after them.
#[cfg(test)]
pub(crate) async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    echo.next().await.unwrap();
}

#[cfg(test)]
mod tests {
    use troupe_actors::testing::WordsEmbedder;

    use super::*;

    #[tokio::test]
    async fn a_node_without_the_model_embeds_through_one_that_runs_it() {
        let server = troupe_testkit::nats::NatsServer::start().await;
        let asking = async_nats::connect(server.url()).await.unwrap();
        let remote = ClusterEmbedder::new(asking, WordsEmbedder.model());
        let texts = vec!["my cat is called Mimi".to_owned(), "the train".to_owned()];
        let refused = remote.embed(texts.clone()).await.unwrap_err();
        assert_eq!(
            refused.failure(),
            EmbedFailure::Unavailable,
            "nobody runs it yet: {refused}"
        );

        let serving = async_nats::connect(server.url()).await.unwrap();
        serve_embedder(serving.clone(), Arc::new(WordsEmbedder))
            .await
            .unwrap();
        round_trip(&serving).await;
        let embedded = remote.embed(texts.clone()).await.unwrap();
        assert_eq!(embedded, WordsEmbedder.embed(texts).await.unwrap());

        let other_model = ClusterEmbedder::new(
            async_nats::connect(server.url()).await.unwrap(),
            "another-model",
        );
        assert_eq!(
            other_model
                .embed(vec!["x".to_owned()])
                .await
                .unwrap_err()
                .failure(),
            EmbedFailure::Unavailable,
            "vectors only ever come from the model named"
        );
    }
}
