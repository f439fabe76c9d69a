//! The interpreter of one run. It walks the plan's steps; before a step's effect it
//! journals the attempt, after it the result, and on replay it takes a step's journaled
//! result instead of running it again. An attempt begun and never finished (the node died)
//! runs again with the same idempotency key, so the effect's receiver can recognise it.
//! Conditions, branches and sub-workflows are walked again on replay; only their leaves
//! have effects, and those are journaled.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::clock::{Clock, millis};
use crate::effects::{
    Effects, IdempotencyKey, ModelRequest, OutgoingMessage, Recipient, StepError, StepErrorCode,
    ToolRequest,
};
use crate::journal::{Record, Replayed, RunJournal};
use crate::metrics as names;
use crate::plan::{Step, StepKind, Test, Workflow};
use crate::template::{Scope, Template, TemplateError, render_value};

/// The longest wait between two attempts of a step.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Deepest nesting of sub-workflows in one run.
const MAX_SUB_DEPTH: usize = 8;

/// What a run is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    Run,
    Pause,
    Cancel,
}

/// A point where a test may hold a run (`workflows.test_hold`): `before:<step>` (the
/// attempt is journaled, its effect not run), `after:<step>` (the effect ran, its result is
/// not journaled), `finished:<step>` (the result is journaled). A run is held at a point
/// once: taken up again (after its node died there), it goes on past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldPoint(pub String);

/// Limits of one run.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Most steps one run may enter (counting nested and replayed ones).
    pub max_steps: u32,
    pub hold: Vec<HoldPoint>,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            max_steps: 1000,
            hold: Vec::new(),
        }
    }
}

/// Everything one run's steps share.
pub(crate) struct RunContext {
    pub(crate) run: String,
    pub(crate) owner: String,
    pub(crate) workflows: HashMap<String, Workflow>,
    pub(crate) journal: RunJournal,
    pub(crate) replayed: Replayed,
    pub(crate) effects: Arc<dyn Effects>,
    pub(crate) replies: Arc<crate::replies::ReplyWaiters>,
    pub(crate) clock: Clock,
    pub(crate) control: watch::Receiver<Control>,
    pub(crate) limits: RunLimits,
    pub(crate) entered: AtomicU32,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(template_failed)`
fn template_failed(error: TemplateError) -> StepError {
    StepError::new(StepErrorCode::Invalid, error.to_string())
}

fn kind_label(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::Model { .. } => "model",
        StepKind::Tool { .. } => "tool",
        StepKind::Send { .. } => "send",
        StepKind::Wait(_) | StepKind::Until(_) => "wait",
        StepKind::WaitReply { .. } => "wait_reply",
        StepKind::Condition { .. } => "if",
        StepKind::Parallel { .. } => "branches",
        StepKind::Workflow { .. } => "workflow",
    }
}

impl RunContext {
    /// Runs `workflow`'s steps in `scope`; answers its output.
    pub(crate) fn workflow<'a>(
        &'a self,
        workflow: &'a Workflow,
        mut scope: Scope,
        prefix: String,
        depth: usize,
    ) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let last = self
                .steps(workflow.steps(), &mut scope, &prefix, depth)
                .await?;
            match workflow.output() {
                Some(template) => template.render(&scope).map_err(template_failed),
                None => Ok(last),
            }
        })
    }

    /// Runs `steps` in order, adding each output to `scope`; answers the last output.
    fn steps<'a>(
        &'a self,
        steps: &'a [Step],
        scope: &'a mut Scope,
        prefix: &'a str,
        depth: usize,
    ) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let mut last = Value::Null;
            for step in steps {
                last = self.step(step, scope, prefix, depth).await?;
                scope.steps.insert(step.id.clone(), last.clone());
            }
            Ok(last)
        })
    }

    /// Waits while the run is paused.
    async fn checkpoint(&self) {
        let mut control = self.control.clone();
        // A closed channel means the run is being dropped; nothing to wait for.
        let _ = control.wait_for(|now| *now != Control::Pause).await;
    }

    /// Holds the run if a test asked for `point` of step `path`, unless the attempt there
    /// began before the run was taken up (`taken_up`): it was held there already.
    async fn hold(&self, point: &str, path: &str, taken_up: bool) {
        if taken_up {
            return;
        }
        if let Some(HoldPoint(hold)) = self.limits.hold.iter().find(|HoldPoint(hold)| {
            hold.strip_prefix(point)
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(path)
        }) {
            tracing::warn!(run = %self.run, hold = %hold, "the run is held at its test hold point");
            std::future::pending::<()>().await;
        }
    }

    async fn step(
        &self,
        step: &Step,
        scope: &Scope,
        prefix: &str,
        depth: usize,
    ) -> Result<Value, StepError> {
        let path = format!("{prefix}{}", step.id);
        let entered = self.entered.fetch_add(1, Ordering::Relaxed) + 1;
        if entered > self.limits.max_steps {
            return Err(StepError::new(
                StepErrorCode::TooManySteps,
                format!(
                    "the run entered more than {} steps (workflows.max_steps_per_run)",
                    self.limits.max_steps
                ),
            ));
        }
        let record = self.replayed.step(&path).cloned().unwrap_or_default();
        if let Some(output) = record.output {
            metrics::counter!(names::STEPS_REPLAYED).increment(1);
            return Ok(output);
        }
        let mut attempt = match record.failed {
            Some((error, None)) => return Err(error),
            Some((_, Some(retry_at))) => {
                self.clock.sleep_until(retry_at).await;
                record.attempt + 1
            }
            None => record.attempt,
        };
        // `attempt` > 0 and not failed: that attempt began and never ended; it goes on.
        let mut resumed_due = (attempt > 0).then_some(record.due);
        if attempt == 0 {
            attempt = 1;
        }
        loop {
            let taken_up = resumed_due.is_some();
            self.checkpoint().await;
            let due = match resumed_due.take() {
                Some(due) => due,
                None => {
                    let due = self.due(step, scope)?;
                    self.journal
                        .append(&Record::StepStarted {
                            step: path.clone(),
                            attempt,
                            at: self.clock.now_ms(),
                            due,
                        })
                        .await?;
                    due
                }
            };
            self.hold("before", &path, taken_up).await;
            let started = Instant::now();
            let outcome = self.attempt(step, scope, &path, attempt, due, depth).await;
            let label = kind_label(&step.kind);
            metrics::histogram!(names::STEP_SECONDS, "kind" => label, "outcome" => if outcome.is_ok() { "ok" } else { "error" })
                .record(started.elapsed().as_secs_f64());
            self.hold("after", &path, taken_up).await;
            match outcome {
                Ok(output) => {
                    self.journal
                        .append(&Record::StepFinished {
                            step: path.clone(),
                            attempt,
                            at: self.clock.now_ms(),
                            output: output.clone(),
                        })
                        .await?;
                    self.hold("finished", &path, false).await;
                    return Ok(output);
                }
                Err(error) => {
                    let retry = error.is_retryable() && attempt <= step.policy.retries;
                    let retry_at = retry.then(|| {
                        let backoff = step
                            .policy
                            .backoff
                            .saturating_mul(1 << (attempt - 1).min(16))
                            .min(MAX_BACKOFF);
                        self.clock.now_ms() + millis(backoff)
                    });
                    self.journal
                        .append(&Record::StepFailed {
                            step: path.clone(),
                            attempt,
                            at: self.clock.now_ms(),
                            error: error.clone(),
                            retry_at,
                        })
                        .await?;
                    let Some(retry_at) = retry_at else {
                        return Err(error);
                    };
                    metrics::counter!(names::STEP_RETRIES, "kind" => label).increment(1);
                    tracing::warn!(run = %self.run, step = %path, attempt, %error, "a step failed; it is tried again");
                    self.clock.sleep_until(retry_at).await;
                    attempt += 1;
                }
            }
        }
    }

    /// When a wait step's attempt ends (fixed when it begins, so a replay keeps it).
    fn due(&self, step: &Step, scope: &Scope) -> Result<Option<i64>, StepError> {
        Ok(match &step.kind {
            StepKind::Wait(duration)
            | StepKind::WaitReply {
                within: duration, ..
            } => Some(self.clock.now_ms() + millis(*duration)),
            StepKind::Until(template) => {
                let text = template.render_text(scope).map_err(template_failed)?;
                let at: jiff::Timestamp = text.trim().parse().map_err(|error| {
                    StepError::new(
                        StepErrorCode::Invalid,
                        format!("`{text}` is not an RFC 3339 time: {error}"),
                    )
                })?;
                Some(at.as_millisecond())
            }
            _ => None,
        })
    }

    async fn attempt(
        &self,
        step: &Step,
        scope: &Scope,
        path: &str,
        attempt: u32,
        due: Option<i64>,
        depth: usize,
    ) -> Result<Value, StepError> {
        let work = self.effect(step, scope, path, attempt, due, depth);
        match step.policy.timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                Err(StepError::new(
                    StepErrorCode::Timeout,
                    format!("the step took longer than its timeout of {limit:?}"),
                ))
            }),
            None => work.await,
        }
    }

    async fn effect(
        &self,
        step: &Step,
        scope: &Scope,
        path: &str,
        attempt: u32,
        due: Option<i64>,
        depth: usize,
    ) -> Result<Value, StepError> {
        let key = IdempotencyKey::new(&self.run, path, attempt);
        match &step.kind {
            StepKind::Model { prompt } => {
                let prompt = prompt.render_text(scope).map_err(template_failed)?;
                let request = ModelRequest {
                    key,
                    owner: self.owner.clone(),
                    conversation: self.run.clone(),
                    prompt,
                };
                self.effects.model(request).await
            }
            StepKind::Tool { tool, arguments } => {
                let arguments = render_value(arguments, scope).map_err(template_failed)?;
                let request = ToolRequest {
                    key,
                    owner: self.owner.clone(),
                    conversation: self.run.clone(),
                    tool: tool.clone(),
                    arguments,
                };
                self.effects.tool(request).await
            }
            StepKind::Send { text, to } => {
                let message = self.message(key, scope, text, to)?;
                self.effects.send(message).await
            }
            StepKind::Wait(_) | StepKind::Until(_) => {
                if let Some(due) = due {
                    self.clock.sleep_until(due).await;
                }
                Ok(json!({"waited_until_ms": due}))
            }
            StepKind::WaitReply { from, within } => {
                let who = from.render_text(scope).map_err(template_failed)?;
                let due = due.unwrap_or_else(|| self.clock.now_ms());
                let since = due - millis(*within);
                Ok(
                    match self
                        .replies
                        .wait(&who, &self.run, since, due, &self.clock)
                        .await
                    {
                        Some(reply) => json!({"replied": true, "text": reply.text,
                        "platform": reply.platform, "sender_id": reply.sender_id, "at_ms": reply.at_ms}),
                        None => json!({"replied": false, "text": ""}),
                    },
                )
            }
            StepKind::Condition {
                value,
                test,
                then,
                otherwise,
            } => {
                let value = value.render(scope).map_err(template_failed)?;
                let holds = holds(test, &value);
                let mut branch_scope = scope.clone();
                let chosen = if holds { then } else { otherwise };
                let output = self
                    .steps(chosen, &mut branch_scope, &path_prefix(path), depth)
                    .await?;
                Ok(json!({"holds": holds, "output": output}))
            }
            StepKind::Parallel { branches, first } => {
                self.parallel(branches, *first, scope, path, depth).await
            }
            StepKind::Workflow { name, input } => {
                self.sub_workflow(name, input, scope, path, depth).await
            }
        }
    }

    fn message(
        &self,
        key: IdempotencyKey,
        scope: &Scope,
        text: &Template,
        to: &Template,
    ) -> Result<OutgoingMessage, StepError> {
        let to_text = to.render_text(scope).map_err(template_failed)?;
        let to = Recipient::parse(&to_text).ok_or_else(|| {
            StepError::new(
                StepErrorCode::Invalid,
                format!("`{to_text}` is not a recipient (`web:<sender>` or `<bridge>:<chat id>`)"),
            )
        })?;
        Ok(OutgoingMessage {
            key,
            owner: self.owner.clone(),
            to,
            text: text.render_text(scope).map_err(template_failed)?,
        })
    }

    async fn parallel(
        &self,
        branches: &[Vec<Step>],
        first: usize,
        scope: &Scope,
        path: &str,
        depth: usize,
    ) -> Result<Value, StepError> {
        let prefix = path_prefix(path);
        let mut running: FuturesUnordered<_> = branches
            .iter()
            .enumerate()
            .map(|(index, steps)| {
                let mut branch_scope = scope.clone();
                let prefix = prefix.clone();
                async move {
                    let outcome = self.steps(steps, &mut branch_scope, &prefix, depth).await;
                    (index, outcome)
                }
            })
            .collect();
        let mut results: Vec<Option<Value>> = vec![None; branches.len()];
        let (mut done, mut failed) = (0, 0);
        while let Some((index, outcome)) = running.next().await {
            match outcome {
                Ok(output) => {
                    results[index] = Some(output);
                    done += 1;
                    if done == first {
                        break;
                    }
                }
                Err(error) => {
                    failed += 1;
                    if branches.len() - failed < first {
                        return Err(error);
                    }
                }
            }
        }
        Ok(Value::Array(results.into_iter().flatten().collect()))
    }

    async fn sub_workflow(
        &self,
        name: &str,
        input: &crate::template::TemplatedValue,
        scope: &Scope,
        path: &str,
        depth: usize,
    ) -> Result<Value, StepError> {
        if depth >= MAX_SUB_DEPTH {
            return Err(StepError::new(
                StepErrorCode::Invalid,
                format!("sub-workflows nest deeper than {MAX_SUB_DEPTH} levels"),
            ));
        }
        let workflow = self.workflows.get(name).ok_or_else(|| {
            StepError::new(
                StepErrorCode::Invalid,
                format!("there is no workflow `{name}`"),
            )
        })?;
        let Value::Object(given) = render_value(input, scope).map_err(template_failed)? else {
            return Err(StepError::new(
                StepErrorCode::Invalid,
                "input is not a table",
            ));
        };
        let mut input: Map<String, Value> = workflow.definition().input.clone();
        input.extend(given);
        let sub_scope = Scope {
            input,
            steps: Map::new(),
            run: scope.run.clone(),
            workflow: Map::from_iter([("name".to_owned(), Value::String(name.to_owned()))]),
        };
        self.workflow(workflow, sub_scope, format!("{path}/"), depth + 1)
            .await
    }
}

/// Steps nested in a condition or a branch keep the prefix of the step around them (their
/// ids are unique in the workflow); a sub-workflow's steps get `<step path>/`.
fn path_prefix(path: &str) -> String {
    match path.rfind('/') {
        Some(slash) => path[..=slash].to_owned(),
        None => String::new(),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn holds(test: &Test, value: &Value) -> bool {
    match test {
        Test::Truthy => match value {
            Value::Null | Value::Bool(false) => false,
            Value::String(text) => !text.is_empty() && text != "false",
            Value::Number(number) => number.as_f64() != Some(0.0),
            Value::Array(items) => !items.is_empty(),
            Value::Object(map) => !map.is_empty(),
            Value::Bool(true) => true,
        },
        Test::Equals(expected) => loosely_equal(value, expected),
        Test::NotEquals(expected) => !loosely_equal(value, expected),
        Test::Contains(needle) => match value {
            Value::String(text) => text.contains(needle.as_str()),
            Value::Array(items) => items
                .iter()
                .any(|item| item.as_str() == Some(needle.as_str())),
            other => other.to_string().contains(needle.as_str()),
        },
        Test::GreaterThan(limit) => number(value).is_some_and(|number| number > *limit),
        Test::LessThan(limit) => number(value).is_some_and(|number| number < *limit),
    }
}

/// Equal as JSON, or as text (a template's `"3"` equals `3`).
fn loosely_equal(value: &Value, expected: &Value) -> bool {
    if value == expected {
        return true;
    }
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    text(value) == text(expected)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
