//! A run's journal as people read it: step by step, each attempt with its timings and
//! outcome (`GET /api/v1/workflows/{id}/runs/{run}`, `troupe workflow logs`).

use serde::Serialize;
use serde_json::Value;

use crate::effects::StepError;
use crate::journal::Record;

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepView {
    /// The step's path (`fetch`, `report/summary` inside the sub-workflow step `report`).
    pub step: String,
    pub status: StepStatus,
    pub attempts: Vec<AttemptView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Retrying,
    Finished,
    Failed,
}

/// One attempt of a step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub started_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// When a wait ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<i64>,
}

/// The steps of a journal in the order they began.
pub fn steps(records: &[Record]) -> Vec<StepView> {
    let mut views: Vec<StepView> = Vec::new();
    let find = |views: &mut Vec<StepView>, step: &str| {
        views
            .iter()
            .position(|view| view.step == step)
            .unwrap_or_else(|| {
                views.push(StepView {
                    step: step.to_owned(),
                    status: StepStatus::Running,
                    attempts: Vec::new(),
                    output: None,
                });
                views.len() - 1
            })
    };
    for record in records {
        match record {
            Record::StepStarted {
                step,
                attempt,
                at,
                due,
            } => {
                let index = find(&mut views, step);
                let view = &mut views[index];
                view.status = StepStatus::Running;
                view.attempts.retain(|seen| seen.attempt != *attempt);
                view.attempts.push(AttemptView {
                    attempt: *attempt,
                    started_ms: *at,
                    ended_ms: None,
                    duration_ms: None,
                    due_ms: *due,
                    error: None,
                    retry_at_ms: None,
                });
            }
            Record::StepFinished {
                step, at, output, ..
            } => {
                let index = find(&mut views, step);
                let view = &mut views[index];
                view.status = StepStatus::Finished;
                view.output = Some(output.clone());
                end_attempt(view, *at, None, None);
            }
            Record::StepFailed {
                step,
                at,
                error,
                retry_at,
                ..
            } => {
                let index = find(&mut views, step);
                let view = &mut views[index];
                view.status = if retry_at.is_some() {
                    StepStatus::Retrying
                } else {
                    StepStatus::Failed
                };
                end_attempt(view, *at, Some(error.clone()), *retry_at);
            }
            _ => {}
        }
    }
    views
}

fn end_attempt(view: &mut StepView, at: i64, error: Option<StepError>, retry_at: Option<i64>) {
    if let Some(last) = view.attempts.last_mut() {
        last.ended_ms = Some(at);
        last.duration_ms = Some(at - last.started_ms);
        last.error = error;
        last.retry_at_ms = retry_at;
    }
}
