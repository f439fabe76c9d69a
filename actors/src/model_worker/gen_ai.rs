//! OpenTelemetry's GenAI semantic conventions for model calls. The session's `model_call`
//! span is the call's client span, exported as `chat {model}` (the model the configured
//! provider asks for); the worker that serves it (that provider, or the fallback that
//! answered) records `gen_ai.provider.name`, `gen_ai.request.model`, then the usage the
//! provider reported
//! (`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`),
//! `gen_ai.response.finish_reasons`, or the failure's `error.type`. The same call is
//! counted on `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`.

use std::time::Instant;

use crate::metrics as metric_names;
use crate::provider::{Completion, FinishReason, ProviderError, ProviderInfo};

/// `gen_ai.operation.name` of a chat completion.
pub const CHAT: &str = "chat";

/// One provider's GenAI metrics, registered once per worker (a model call records into
/// them without building labels).
pub(super) struct GenAiMetrics {
    labels: [(&'static str, String); 3],
    duration: metrics::Histogram,
    input_tokens: metrics::Histogram,
    output_tokens: metrics::Histogram,
}

impl GenAiMetrics {
    pub(super) fn of(provider: &ProviderInfo) -> Self {
        let labels = [
            ("gen_ai.operation.name", CHAT.to_owned()),
            ("gen_ai.provider.name", provider.kind.clone()),
            ("gen_ai.request.model", provider.model.clone()),
        ];
        let tokens = |kind: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("gen_ai.token.type", kind.to_owned()));
            metrics::histogram!(metric_names::GEN_AI_TOKEN_USAGE, &labels)
        };
        Self {
            duration: metrics::histogram!(metric_names::GEN_AI_OPERATION_DURATION, &labels),
            input_tokens: tokens("input"),
            output_tokens: tokens("output"),
            labels,
        }
    }

    /// The duration of a failed call, labelled with its `error.type`.
    fn failed(&self, error_type: &'static str, seconds: f64) {
        let mut labels = self.labels.to_vec();
        labels.push(("error.type", error_type.to_owned()));
        metrics::histogram!(metric_names::GEN_AI_OPERATION_DURATION, &labels).record(seconds);
    }
}

/// One provider's part in a model call.
pub(super) struct GenAiCall<'a> {
    span: &'a tracing::Span,
    metrics: &'a GenAiMetrics,
    started: Instant,
}

/// `gen_ai.response.finish_reasons`, as the conventions spell them.
const fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other => "other",
    }
}

impl<'a> GenAiCall<'a> {
    /// `provider` (counted in `metrics`) takes the call of `span` (the caller's
    /// `model_call`).
    pub(super) fn begin(
        span: &'a tracing::Span,
        provider: &ProviderInfo,
        metrics: &'a GenAiMetrics,
    ) -> Self {
        span.record("gen_ai.provider.name", provider.kind.as_str());
        span.record("gen_ai.request.model", provider.model.as_str());
        Self {
            span,
            metrics,
            started: Instant::now(),
        }
    }

    /// The call ended with `result`.
    pub(super) fn end(self, result: &Result<Completion, ProviderError>) {
        let seconds = self.started.elapsed().as_secs_f64();
        match result {
            Ok(completion) => {
                self.span.record(
                    "gen_ai.response.finish_reasons",
                    finish_reason(completion.finish_reason),
                );
                self.metrics.duration.record(seconds);
                if let Some(usage) = completion.usage {
                    self.span
                        .record("gen_ai.usage.input_tokens", usage.input_tokens);
                    self.span
                        .record("gen_ai.usage.output_tokens", usage.output_tokens);
                    self.metrics.input_tokens.record(usage.input_tokens as f64);
                    self.metrics
                        .output_tokens
                        .record(usage.output_tokens as f64);
                }
            }
            Err(error) => {
                let kind = error.kind.as_str();
                self.span.record("error.type", kind);
                self.metrics.failed(kind, seconds);
            }
        }
    }
}
