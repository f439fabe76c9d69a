//! The tool loop of a turn: ask the model with the tools this conversation may use, run the
//! calls it makes (in parallel, each within its skill's time limit), feed the results back,
//! and repeat until it answers in words, at most `max_rounds` times. Calls that need the
//! user's confirmation wait, in the session and its snapshot, for their yes or no.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::SessionState;
use super::spend::TurnSpend;
use crate::message::{InboundMessage, unix_now};
use crate::model_worker::Served;
use crate::provider::{ChatRequest, Completion, DeltaSink, Role, ToolCall, ToolSpec};
use crate::skill::{
    PreparedCall, REPLY_ROUTE_METADATA, SkillError, SkillErrorCode, SkillSession, ToolOutcome,
};
use crate::snapshot::{HistoryEntry, PendingTools};
use crate::stop::TurnStop;
use crate::turn::{ErrorCode, TurnError, TurnEvent, TurnEvents};
use crate::turn_context::gather;
use crate::usage::guarded;

/// What the user said to calls waiting for confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Approve,
    Refuse,
}

/// Reads a yes or a no; anything else from the person who was asked is a new request (the
/// waiting calls are dropped).
fn decision_of(text: &str) -> Option<Decision> {
    let word = text.trim().trim_end_matches(['.', '!']).to_lowercase();
    match word.as_str() {
        "yes" | "y" | "ok" | "okay" | "approve" | "confirm" | "allow" | "go ahead" | "do it" => {
            Some(Decision::Approve)
        }
        "no" | "n" | "refuse" | "deny" | "cancel" | "don't" | "stop" => Some(Decision::Refuse),
        _ => None,
    }
}

impl SessionState {
    /// Who the turn is for, as skills see it.
    fn skill_session(&self, message: &InboundMessage) -> SkillSession {
        let person = self.person_of(message);
        SkillSession {
            key: self.key.to_string(),
            platform: self.key.platform().to_owned(),
            conversation_id: self.key.conversation_id().to_owned(),
            sender_id: message.sender_id().to_owned(),
            person,
            message_id: message.id().to_owned(),
            reply_route: message.metadata().get(REPLY_ROUTE_METADATA).cloned(),
        }
    }

    /// The turn after the user's entry: tool rounds until the model answers, or until the
    /// person stops it; returns the answer.
    pub(super) async fn converse(
        &mut self,
        message: &InboundMessage,
        events: &TurnEvents,
        stop: &TurnStop,
        spend: &mut TurnSpend,
    ) -> Result<Answer, TurnError> {
        let session = self.skill_session(message);
        // Right after start a skill may still be reading its manifest: wait for it (bounded
        // by its time limit), or this turn would be offered none of its tools.
        self.context.skills.until_started().await;
        let tools = self.context.skills.tools_for(&session);
        // Whom the model's slots are shared between: the person, whatever the conversation.
        let requester: Arc<str> = format!("{}:{}", message.platform(), message.sender_id()).into();
        let mut round = 0;
        if let Some(pending) = self.pending.take() {
            if pending.requested_by != message.sender_id() {
                // Someone else in the conversation: the calls keep waiting for their owner.
                self.pending = Some(pending);
            } else if let Some(decision) = decision_of(message.payload()) {
                round = pending.round + 1;
                self.resume(pending, decision, &session, events, message.id())
                    .await;
            }
        }
        let max_rounds = self.context.config.tools.max_rounds;
        let mut over_limit = false;
        let turn_context = gather(self.context.turn_context.as_deref(), message).await;
        let recalled = self.recall(message, &session.person, events).await;
        let turn_context = match (turn_context, recalled) {
            (Some(context), Some(recalled)) => Some(format!("{context}\n\n{recalled}")),
            (context, recalled) => context.or(recalled),
        };
        loop {
            // A tool call already running finishes (its result is recorded); no model call
            // starts after a stop.
            if stop.is_stopped() {
                return Ok(Answer::stopped(String::new()));
            }
            // Pictures are on user entries only, so the whole history is the prompt's window
            // as far as they go.
            self.pictures.hold(&self.key, self.history.iter()).await?;
            self.within_budget(&session.person)?;
            let asked = self.ask_model(
                message.id(),
                tools.clone(),
                turn_context.as_deref(),
                events,
                &requester,
                stop,
            );
            let completion = match asked.await? {
                Asked::Answered(served) => {
                    spend.add(&served);
                    served.completion
                }
                Asked::Stopped(said) => return Ok(Answer::stopped(said)),
            };
            if completion.tool_calls.is_empty() {
                return Ok(Answer::complete(completion.text));
            }
            // The model wants another round: not past the runaway guards.
            self.within_turn_limit(spend)?;
            if over_limit {
                guarded("tool_rounds");
                return Err(TurnError::new(
                    ErrorCode::ToolRoundsExceeded,
                    format!("the model kept calling tools after {max_rounds} rounds"),
                ));
            }
            announce_calls(events, message.id(), &completion.tool_calls);
            if round >= max_rounds {
                over_limit = true;
                self.refuse_all(&completion, message.id(), events, &round_limit(max_rounds));
                continue;
            }
            let prepared: Vec<Result<PreparedCall, SkillError>> = completion
                .tool_calls
                .iter()
                .map(|call| self.context.skills.prepare(call, &session))
                .collect();
            if prepared
                .iter()
                .flatten()
                .any(|call| call.needs_confirmation)
            {
                let question = confirmation_question(&prepared);
                self.pending = Some(PendingTools {
                    text: completion.text,
                    calls: completion.tool_calls,
                    round,
                    requested_by: message.sender_id().to_owned(),
                    asked_at: unix_now(),
                });
                return Ok(Answer::complete(question));
            }
            self.push_tool_request(&completion.text, &completion.tool_calls);
            self.run_round(
                &completion.tool_calls,
                prepared,
                &session,
                events,
                message.id(),
            )
            .await;
            round += 1;
        }
    }

    /// Runs (or refuses) calls that waited for the user's answer.
    async fn resume(
        &mut self,
        pending: PendingTools,
        decision: Decision,
        session: &SkillSession,
        events: &TurnEvents,
        in_reply_to: &str,
    ) {
        self.push_tool_request(&pending.text, &pending.calls);
        let prepared = pending
            .calls
            .iter()
            .map(|call| match decision {
                Decision::Approve => self.context.skills.prepare(call, session),
                Decision::Refuse => Err(SkillError::new(
                    SkillErrorCode::Refused,
                    "the user refused this call",
                )),
            })
            .collect();
        self.run_round(&pending.calls, prepared, session, events, in_reply_to)
            .await;
    }

    /// Answers every call of `completion` with the same error, without running any.
    fn refuse_all(
        &mut self,
        completion: &Completion,
        in_reply_to: &str,
        events: &TurnEvents,
        error: &SkillError,
    ) {
        self.push_tool_request(&completion.text, &completion.tool_calls);
        for call in &completion.tool_calls {
            let outcome = ToolOutcome {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                result: Err(error.clone()),
            };
            self.push_tool_result(&outcome, events, in_reply_to);
        }
    }

    /// Runs one round's `calls` (each `prepared` for running, or refused), in parallel (up
    /// to `max_parallel` at once), and records each result in the order the model asked.
    async fn run_round(
        &mut self,
        calls: &[ToolCall],
        prepared: Vec<Result<PreparedCall, SkillError>>,
        session: &SkillSession,
        events: &TurnEvents,
        in_reply_to: &str,
    ) {
        debug_assert_eq!(calls.len(), prepared.len(), "one preparation per call");
        debug_assert!(
            self.history
                .back()
                .is_some_and(|request| request.tool_calls == calls),
            "a round's results follow the request that asked for them"
        );
        let started = std::time::Instant::now();
        let skills = Arc::clone(&self.context.skills);
        let parallel = self.context.config.tools.max_parallel.max(1);
        let named: Vec<(String, String)> = calls
            .iter()
            .map(|call| (call.id.clone(), call.name.clone()))
            .collect();
        let outcomes: Vec<ToolOutcome> =
            futures_util::stream::iter(named.into_iter().zip(prepared))
                .map(|((call_id, tool), prepared)| {
                    let (skills, session) = (Arc::clone(&skills), session.clone());
                    async move {
                        match prepared {
                            Ok(prepared) => {
                                let span = tool_span(&prepared.tool, &call_id);
                                let outcome =
                                    skills.run(prepared, session).instrument(span.clone()).await;
                                if let Err(error) = &outcome.result {
                                    span.record("error.type", error.code.as_str());
                                }
                                outcome
                            }
                            // Refused before running: the call it answers is named all the same.
                            Err(error) => ToolOutcome {
                                call_id,
                                tool,
                                result: Err(error),
                            },
                        }
                    }
                })
                .buffered(parallel)
                .collect()
                .await;
        super::took(&self.context.stages.tools, started.elapsed());
        for (outcome, call) in outcomes.iter().zip(calls) {
            debug_assert_eq!(outcome.call_id, call.id, "each result answers its own call");
            self.push_tool_result(outcome, events, in_reply_to);
        }
    }

    fn push_tool_request(&mut self, text: &str, calls: &[ToolCall]) {
        self.push_history(HistoryEntry {
            role: Role::Assistant,
            content: text.into(),
            tool_calls: calls.to_vec(),
            tool_call_id: None,
            message_id: None,
            timestamp: unix_now(),
            images: Vec::new(),
        });
    }

    fn push_tool_result(&mut self, outcome: &ToolOutcome, events: &TurnEvents, in_reply_to: &str) {
        let content = outcome.content();
        let _ = events.send(TurnEvent::ToolResult {
            in_reply_to: in_reply_to.to_owned(),
            call_id: outcome.call_id.clone(),
            name: outcome.tool.clone(),
            ok: outcome.result.is_ok(),
            content: content.clone(),
        });
        self.push_history(HistoryEntry {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(outcome.call_id.clone()),
            message_id: None,
            timestamp: unix_now(),
            images: Vec::new(),
        });
    }

    /// The prompt: system prompt (and the turn's context after it), then the history window
    /// from its first user entry (a window cut in the middle of a tool round would otherwise
    /// start with orphan results).
    fn build_request(&self, tools: Arc<[ToolSpec]>, turn_context: Option<&str>) -> ChatRequest {
        let configured = &self.context.config.system_prompt;
        let system_prompt: Arc<str> = match turn_context {
            Some(context) if configured.is_empty() => context.into(),
            Some(context) => format!("{configured}\n\n{context}").into(),
            None => Arc::clone(configured),
        };
        let first_user = self
            .history
            .iter()
            .position(|entry| entry.role == Role::User)
            .unwrap_or(self.history.len());
        ChatRequest {
            system_prompt: (!system_prompt.is_empty()).then_some(system_prompt),
            messages: self
                .history
                .iter()
                .skip(first_user)
                .map(|entry| {
                    let mut message = entry.to_chat_message();
                    message.images = self.pictures.parts_of(entry);
                    message
                })
                .collect(),
            tools,
            stream: true,
        }
    }

    /// One model call, streamed to the person, until it answers or the turn is stopped.
    async fn ask_model(
        &self,
        in_reply_to: &str,
        tools: Arc<[ToolSpec]>,
        turn_context: Option<&str>,
        events: &TurnEvents,
        requester: &Arc<str>,
        stop: &TurnStop,
    ) -> Result<Asked, TurnError> {
        let config = &self.context.config;
        let shown = ShownText::default();
        let deltas = shown.sink(events, in_reply_to, stop.token());
        let call = self
            .context
            .models
            .complete(
                &config.provider,
                self.build_request(tools, turn_context),
                deltas,
                config.turn_timeout,
                Arc::clone(requester),
            )
            .instrument(tracing::debug_span!(
                "model_call",
                otel.kind = "client",
                // OpenTelemetry's GenAI conventions: the serving worker records the rest
                // (`model_worker::gen_ai`).
                otel.name = %self.context.models.chat_span_name(&config.provider),
                provider = %config.provider,
                gen_ai.operation.name = crate::model_worker::CHAT_OPERATION,
                gen_ai.conversation.id = %self.key,
                gen_ai.provider.name = tracing::field::Empty,
                gen_ai.request.model = tracing::field::Empty,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                gen_ai.response.finish_reasons = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        // A stop is seen by the model worker, which drops the provider's call (and with it
        // the answer this waits for): whatever failure that gives, the turn was stopped.
        let started = std::time::Instant::now();
        let answer = call.await;
        super::took(&self.context.stages.model, started.elapsed());
        match answer {
            _ if stop.is_stopped() => Ok(Asked::Stopped(shown.close())),
            served => served.map(Asked::Answered),
        }
    }
}

/// A tool call's span, as OpenTelemetry's GenAI conventions name it: `execute_tool
/// {gen_ai.tool.name}`, with the call's id, and `error.type` when it fails.
fn tool_span(tool: &str, call_id: &str) -> tracing::Span {
    tracing::debug_span!(
        "tool_call",
        otel.name = %format!("execute_tool {tool}"),
        tool,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = tool,
        gen_ai.tool.call.id = call_id,
        error.type = tracing::field::Empty,
    )
}

/// How a turn ended: in the model's answer, or stopped by the person.
#[derive(Debug)]
pub(super) struct Answer {
    /// The answer, or what the person had been shown of it when they stopped it.
    pub(super) text: String,
    pub(super) stopped: bool,
}

impl Answer {
    fn complete(text: String) -> Self {
        Self {
            text,
            stopped: false,
        }
    }

    fn stopped(text: String) -> Self {
        Self {
            text,
            stopped: true,
        }
    }
}

/// How one model call ended.
enum Asked {
    Answered(Served),
    /// Stopped; with the text streamed to the person before the stop.
    Stopped(String),
}

/// The text of one model call that reached the person, kept so that a stopped turn keeps
/// exactly what was shown: a piece is forwarded and kept under one lock, and none is
/// forwarded once the turn is stopped.
#[derive(Clone, Default)]
struct ShownText(Arc<Mutex<String>>);

impl ShownText {
    fn sink(&self, events: &TurnEvents, in_reply_to: &str, stop: &CancellationToken) -> DeltaSink {
        let (events, in_reply_to) = (events.clone(), in_reply_to.to_owned());
        let (shown, gate) = (self.clone(), stop.clone());
        DeltaSink::new(move |text| {
            let mut kept = shown.lock();
            if gate.is_cancelled() {
                return;
            }
            kept.push_str(text);
            let delta = TurnEvent::Delta {
                in_reply_to: in_reply_to.clone(),
                text: text.to_owned(),
            };
            let _ = events.send(delta);
        })
        .stopped_by(stop.clone())
    }

    /// What was shown; nothing more is forwarded after this (the turn was stopped first).
    fn close(&self) -> String {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn announce_calls(events: &TurnEvents, in_reply_to: &str, calls: &[ToolCall]) {
    for call in calls {
        let _ = events.send(TurnEvent::ToolCall {
            in_reply_to: in_reply_to.to_owned(),
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
    }
}

fn round_limit(max_rounds: u32) -> SkillError {
    SkillError::new(
        SkillErrorCode::Refused,
        format!(
            "not run: the limit of {max_rounds} tool rounds for one message is reached; \
             answer the user with what you have"
        ),
    )
}

/// The question the user answers with yes or no.
fn confirmation_question(prepared: &[Result<PreparedCall, SkillError>]) -> String {
    let asked: Vec<String> = prepared
        .iter()
        .flatten()
        .filter(|call| call.needs_confirmation)
        .map(|call| format!("- `{}` with {}", call.tool, call.arguments))
        .collect();
    format!(
        "Before I go on, I need your permission to run:\n{}\n\nReply **yes** to allow it or **no** to refuse.",
        asked.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yes_and_no_and_nothing_else() {
        assert_eq!(decision_of(" Yes! "), Some(Decision::Approve));
        assert_eq!(decision_of("OK."), Some(Decision::Approve));
        assert_eq!(decision_of("no"), Some(Decision::Refuse));
        assert_eq!(decision_of("yes please delete everything"), None);
        assert_eq!(decision_of("what time is it?"), None);
    }
}
