//! `ModelWorker`: the actor that owns one configured model provider and runs its calls as a
//! pool of concurrent tasks, with a timeout per attempt, retries with backoff on 429/5xx
//! (honouring `Retry-After`), a concurrency limit shared fairly between requesters
//! ([`fair`]), and a fallback chain to other providers.
//!
//! The actor itself never waits on a provider: each call runs in its own task, so one slow
//! completion never holds up another. It supervises those tasks for real: a provider that
//! panics fails its call with a `crashed` error (a fallback may still answer), and then
//! fails the worker, which its supervisor restarts within its restart budget; a provider
//! that keeps panicking stops the node instead of limping on.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::FutureExt;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use crate::metrics as metric_names;
use crate::provider::{
    ChatRequest, Completion, DeltaSink, ModelProvider, ProviderError, ProviderErrorKind,
    ProviderInfo,
};
use crate::turn::{ErrorCode, TurnError};

mod fair;
mod gen_ai;

use fair::FairSlots;
pub use gen_ai::CHAT as CHAT_OPERATION;

/// Longest `Retry-After` we are willing to wait inside one request.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a provider is called: limits and what to do when it fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderPolicy {
    /// Limit for one attempt, from request to last byte.
    pub timeout: Duration,
    /// Retries after the first attempt, for retryable failures only.
    pub max_retries: u32,
    /// First backoff; doubled per retry, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Calls in flight at once; more wait for a slot (within `timeout`).
    pub max_concurrency: usize,
    /// Providers (by name) to try, in order, when this one fails.
    pub fallbacks: Vec<String>,
}

impl Default for ProviderPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            max_retries: 2,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_concurrency: 64,
            fallbacks: Vec::new(),
        }
    }
}

/// The live model workers by provider name. Supervisors update it when they (re)start a
/// worker; sessions and workers look providers up here on each call, so a restarted worker
/// is found without anyone holding a stale reference.
#[derive(Debug, Default)]
pub struct ModelDirectory {
    workers: DashMap<String, ActorRef<ModelWorkerMsg>>,
    /// The model each provider asks for, by provider name.
    models: DashMap<String, String>,
}

impl ModelDirectory {
    pub fn get(&self, provider: &str) -> Option<ActorRef<ModelWorkerMsg>> {
        self.workers.get(provider).map(|worker| worker.clone())
    }

    pub fn register(&self, provider: &ProviderInfo, worker: ActorRef<ModelWorkerMsg>) {
        self.models
            .insert(provider.name.clone(), provider.model.clone());
        self.workers.insert(provider.name.clone(), worker);
    }

    /// The name of a call's span through `provider`: `chat {model}`, the model it asks
    /// for, looked up only when a layer records the span.
    pub fn chat_span_name<'a>(&'a self, provider: &'a str) -> impl std::fmt::Display + 'a {
        ChatSpanName {
            directory: self,
            provider,
        }
    }

    /// One completion through `provider`'s worker (its policy and fallbacks), bounded by
    /// `timeout`, with every failure mapped to the error the user sees.
    /// `requester` (`platform:sender_id`) is whom the provider's slots are shared between.
    pub async fn complete(
        &self,
        provider: &str,
        request: ChatRequest,
        deltas: DeltaSink,
        timeout: Duration,
        requester: Arc<str>,
    ) -> Result<Served, TurnError> {
        let worker = self.get(provider).ok_or_else(|| {
            TurnError::new(
                ErrorCode::ProviderError,
                format!("provider `{provider}` is not running"),
            )
        })?;
        let request = Arc::new(request);
        let answer = worker
            .call(
                |reply| ModelWorkerMsg::Complete {
                    request,
                    deltas,
                    requester,
                    tried: Vec::new(),
                    span: tracing::Span::current(),
                    reply,
                },
                Some(timeout),
            )
            .await;
        match answer {
            Ok(CallResult::Success(Ok(served))) => Ok(served),
            Ok(CallResult::Success(Err(error))) => {
                tracing::warn!(%error, "turn failed at the provider");
                Err(TurnError::from(&error))
            }
            Ok(CallResult::Timeout) => Err(TurnError::new(
                ErrorCode::ProviderTimeout,
                format!("the model gave no answer within {timeout:?}"),
            )),
            Ok(CallResult::SenderError) | Err(_) => Err(TurnError::new(
                ErrorCode::ProviderError,
                format!("provider `{provider}` stopped before answering"),
            )),
        }
    }
}

/// [`ModelDirectory::chat_span_name`].
struct ChatSpanName<'a> {
    directory: &'a ModelDirectory,
    provider: &'a str,
}

impl std::fmt::Display for ChatSpanName<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let model = self.directory.models.get(self.provider);
        let model = model.as_deref().map_or("", String::as_str);
        write!(formatter, "{CHAT_OPERATION} {model}")
    }
}

/// A completion, and who gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub completion: Completion,
    /// Who answered: the configured provider (a fallback's own name when one did) and the
    /// model it asks for, shared with its worker.
    pub by: ServedBy,
}

/// A provider and its model, as a worker names them on every answer it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedBy {
    pub provider: Arc<str>,
    pub model: Arc<str>,
}

/// Messages of a [`ModelWorker`].
pub enum ModelWorkerMsg {
    /// Run one completion; the answer comes on `reply`.
    Complete {
        request: Arc<ChatRequest>,
        deltas: DeltaSink,
        /// Whom the call is for: slots are shared fairly between requesters.
        requester: Arc<str>,
        /// Providers already tried in this chain (so fallbacks never loop).
        tried: Vec<String>,
        /// The caller's span of the call (`model_call`), which the provider that serves
        /// it describes ([`gen_ai`]).
        span: tracing::Span,
        reply: RpcReplyPort<Result<Served, ProviderError>>,
    },
    /// A call task caught its provider panicking: the worker fails, to be restarted.
    CallPanicked { panic: String },
}

/// Why a worker stopped itself.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}` panicked during a call: {panic}")]
pub struct ProviderPanicked {
    pub provider: String,
    pub panic: String,
}

/// Start-up arguments of a [`ModelWorker`].
pub struct ModelWorkerArgs {
    pub provider: Arc<dyn ModelProvider>,
    pub policy: ProviderPolicy,
    pub directory: Arc<ModelDirectory>,
}

/// State of a [`ModelWorker`]: shared with the tasks it spawns.
pub struct ModelWorkerState {
    call: Arc<PolicyCall>,
    directory: Arc<ModelDirectory>,
}

/// What one call task needs.
struct PolicyCall {
    provider: Arc<dyn ModelProvider>,
    policy: ProviderPolicy,
    slots: Arc<FairSlots>,
    gen_ai: gen_ai::GenAiMetrics,
    /// Named on every answer, built once.
    served_by: ServedBy,
}

impl PolicyCall {
    fn new(provider: Arc<dyn ModelProvider>, policy: ProviderPolicy) -> Self {
        Self {
            gen_ai: gen_ai::GenAiMetrics::of(provider.info()),
            slots: FairSlots::new(policy.max_concurrency),
            served_by: ServedBy {
                provider: provider.info().name.as_str().into(),
                model: provider.info().model.as_str().into(),
            },
            provider,
            policy,
        }
    }
}

/// The actor: one per configured provider.
#[derive(Debug, Default)]
pub struct ModelWorker;

impl Actor for ModelWorker {
    type Msg = ModelWorkerMsg;
    type State = ModelWorkerState;
    type Arguments = ModelWorkerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ModelWorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ModelWorkerState {
            call: Arc::new(PolicyCall::new(args.provider, args.policy)),
            directory: args.directory,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: ModelWorkerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (request, deltas, requester, mut tried, span, reply) = match message {
            ModelWorkerMsg::Complete {
                request,
                deltas,
                requester,
                tried,
                span,
                reply,
            } => (request, deltas, requester, tried, span, reply),
            ModelWorkerMsg::CallPanicked { panic } => {
                return Err(ProviderPanicked {
                    provider: state.call.provider_name().to_owned(),
                    panic,
                }
                .into());
            }
        };
        let call = Arc::clone(&state.call);
        let directory = Arc::clone(&state.directory);
        tokio::spawn(async move {
            let described = gen_ai::GenAiCall::begin(&span, call.provider.info(), &call.gen_ai);
            let running = call
                .run_supervised(&request, &deltas, &requester, &myself)
                .instrument(span.clone());
            let result = tokio::select! {
                result = running => result,
                // The person stopped the turn: the provider's call is dropped here (which
                // closes its stream), and nobody waits for an answer.
                () = deltas.stopped() => {
                    tracing::debug!(provider = %call.provider_name(), "call stopped by the person");
                    return;
                }
            };
            described.end(&result);
            let error = match result {
                Ok(completion) => {
                    let served = Served {
                        completion,
                        by: call.served_by.clone(),
                    };
                    let _ = reply.send(Ok(served));
                    return;
                }
                Err(error) => error,
            };
            tried.push(call.provider.info().name.clone());
            let next = (!deltas.has_emitted())
                .then(|| next_fallback(&call.policy.fallbacks, &tried, &directory))
                .flatten();
            let Some((fallback_name, fallback)) = next else {
                let _ = reply.send(Err(error));
                return;
            };
            tracing::warn!(from = %call.provider.info().name, to = %fallback_name, %error, "falling back");
            metrics::counter!(metric_names::PROVIDER_FALLBACKS, "provider" => call.provider.info().name.clone())
                .increment(1);
            let forwarded = ModelWorkerMsg::Complete {
                request,
                deltas,
                requester,
                tried,
                span,
                reply,
            };
            if let Err(send_error) = fallback.cast(forwarded) {
                tracing::error!(%send_error, "fallback worker is gone");
            }
        });
        Ok(())
    }
}

fn next_fallback(
    fallbacks: &[String],
    tried: &[String],
    directory: &ModelDirectory,
) -> Option<(String, ActorRef<ModelWorkerMsg>)> {
    fallbacks
        .iter()
        .filter(|name| !tried.contains(name))
        .find_map(|name| directory.get(name).map(|worker| (name.clone(), worker)))
}

impl PolicyCall {
    fn provider_name(&self) -> &str {
        &self.provider.info().name
    }

    /// [`Self::run`], with a panic of the provider's code caught: the call fails with a
    /// `crashed` error and the worker is told, so that it fails and is restarted.
    async fn run_supervised(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
        requester: &str,
        worker: &ActorRef<ModelWorkerMsg>,
    ) -> Result<Completion, ProviderError> {
        let running = std::panic::AssertUnwindSafe(self.run(request, deltas, requester));
        match running.catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                let panic = panic_text(panic.as_ref());
                metrics::counter!(metric_names::PROVIDER_ERRORS,
                    "provider" => self.provider_name().to_owned(), "kind" => ProviderErrorKind::Crashed.as_str())
                .increment(1);
                let _ = worker.cast(ModelWorkerMsg::CallPanicked {
                    panic: panic.clone(),
                });
                Err(ProviderError::new(
                    ProviderErrorKind::Crashed,
                    self.provider_name(),
                    format!("the provider failed unexpectedly ({panic})"),
                ))
            }
        }
    }

    /// One completion under the policy: a slot, then attempts with backoff.
    async fn run(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
        requester: &str,
    ) -> Result<Completion, ProviderError> {
        let slot = tokio::time::timeout(self.policy.timeout, self.slots.acquire(requester)).await;
        let Ok(_slot) = slot else {
            return Err(ProviderError::new(
                ProviderErrorKind::Unavailable,
                self.provider_name(),
                format!(
                    "all {} slots stayed busy for {:?}",
                    self.policy.max_concurrency, self.policy.timeout
                ),
            ));
        };
        let mut attempt = 0;
        loop {
            let error = match self.attempt(request, deltas).await {
                Ok(completion) => return Ok(completion),
                Err(error) => error,
            };
            metrics::counter!(metric_names::PROVIDER_ERRORS,
                "provider" => self.provider_name().to_owned(), "kind" => error.kind.as_str())
            .increment(1);
            let Some(wait) = self.retry_wait(&error, attempt, deltas) else {
                return Err(error);
            };
            tracing::info!(provider = %self.provider_name(), %error, ?wait, attempt, "retrying");
            metrics::counter!(metric_names::PROVIDER_RETRIES, "provider" => self.provider_name().to_owned())
                .increment(1);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        match tokio::time::timeout(self.policy.timeout, self.provider.complete(request, deltas))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(ProviderError::new(
                ProviderErrorKind::Timeout,
                self.provider_name(),
                format!("no complete answer within {:?}", self.policy.timeout),
            )),
        }
    }

    /// How long to wait before the next attempt, or `None` when we must not retry.
    fn retry_wait(
        &self,
        error: &ProviderError,
        attempt: u32,
        deltas: &DeltaSink,
    ) -> Option<Duration> {
        if !error.kind.is_retryable() || attempt >= self.policy.max_retries || deltas.has_emitted()
        {
            return None;
        }
        if let Some(retry_after) = error.retry_after {
            return (retry_after <= MAX_RETRY_AFTER).then_some(retry_after);
        }
        Some(backoff(&self.policy, attempt))
    }
}

/// What a panic said, when it said it in text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Exponential backoff with full jitter in the upper half: `[d/2, d]`, `d = base * 2^attempt`.
fn backoff(policy: &ProviderPolicy, attempt: u32) -> Duration {
    let exponential = policy
        .base_backoff
        .saturating_mul(2u32.saturating_pow(attempt));
    let capped = exponential.min(policy.max_backoff);
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod supervision_tests;
#[cfg(test)]
mod tests;
