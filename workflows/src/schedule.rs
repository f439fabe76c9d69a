//! Schedules that never silently skip. Each trigger keeps its last handled due time in the
//! workflow store. A firing that comes due starts a run whose id is made from the firing
//! (`<workflow>.t<trigger>.<due ms>`), so a firing handled twice (a crash between starting
//! the run and recording the time) still runs once. After downtime, the most recent missed
//! firing still inside the trigger's `catch_up` window runs once; every other missed firing
//! is recorded as missed (shown by `GET /api/v1/workflows` and logged).

use std::collections::HashMap;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::millis;
use crate::journal::{Cause, MissedFiring, ScheduleState};
use crate::metrics as names;
use crate::plan::{Trigger, When, Workflow};
use crate::runs::{StartRun, Workflows};

/// Most missed firings kept per trigger.
const MISSED_KEPT: usize = 100;
/// Most firings looked at in one pass after a long downtime (older ones are summed up).
const MOST_FIRINGS: usize = 10_000;
/// The longest the scheduler sleeps without looking again.
const LOOK_AGAIN_MS: i64 = 60_000;

/// The first firing of `trigger` after `after_ms`.
pub fn next_due(trigger: &Trigger, after_ms: i64) -> Option<i64> {
    match &trigger.when {
        When::Cron(schedule) => {
            let after = jiff::Timestamp::from_millisecond(after_ms).ok()?;
            schedule
                .next_after(after)
                .map(jiff::Timestamp::as_millisecond)
        }
        When::Every(interval) => after_ms.checked_add(millis(*interval)),
        When::At(at) => (at.as_millisecond() > after_ms).then(|| at.as_millisecond()),
        When::Webhook { .. } | When::Message { .. } => None,
    }
}

/// What to do with one trigger now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The due time of the firing to run now.
    pub fire: Option<i64>,
    /// Due times that will not run.
    pub missed: Vec<i64>,
    /// The trigger's last handled due time after this decision.
    pub last_due: Option<i64>,
}

/// Decides what `trigger` does at `now_ms`, given the last due time it handled.
pub fn decide(trigger: &Trigger, last_due: Option<i64>, now_ms: i64) -> Decision {
    if !trigger.when.is_timed() {
        return Decision::default();
    }
    let after = match (last_due, &trigger.when) {
        (Some(last), _) => last,
        // A one-off time is due once, whenever the schedule was first seen.
        (None, When::At(at)) => at.as_millisecond() - 1,
        // A new schedule starts from now: nothing before it was ever due.
        (None, _) => {
            return Decision {
                last_due: Some(now_ms),
                ..Decision::default()
            };
        }
    };
    let mut due = Vec::new();
    let mut cursor = after;
    if let When::Every(interval) = &trigger.when {
        // Jump over a long downtime instead of walking it.
        let step = millis(*interval).max(1);
        let behind = (now_ms - cursor) / step;
        if behind > MOST_FIRINGS as i64 {
            cursor += (behind - MOST_FIRINGS as i64) * step;
        }
    }
    while let Some(next) = next_due(trigger, cursor) {
        if next > now_ms || due.len() >= MOST_FIRINGS {
            break;
        }
        due.push(next);
        cursor = next;
    }
    let Some(&latest) = due.last() else {
        return Decision {
            last_due,
            ..Decision::default()
        };
    };
    let fire = (now_ms - latest <= millis(trigger.catch_up)).then_some(latest);
    let missed = due.into_iter().filter(|time| Some(*time) != fire).collect();
    Decision {
        fire,
        missed,
        last_due: Some(latest),
    }
}

/// The store key of trigger `index` of `workflow`.
pub fn schedule_key(workflow: &str, index: usize) -> String {
    format!("{workflow}#{index}")
}

/// The run id of a firing.
pub fn firing_run_id(workflow: &str, index: usize, due_ms: i64) -> String {
    format!("{workflow}.t{index}.{due_ms}")
}

/// One trigger as `GET /api/v1/workflows` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerReport {
    pub index: usize,
    pub last_due_ms: Option<i64>,
    pub next_due_ms: Option<i64>,
    pub missed: Vec<MissedFiring>,
}

/// The triggers of `workflow` with their durable state.
pub async fn report(workflows: &Workflows, workflow: &Workflow) -> Vec<TriggerReport> {
    let now = workflows.clock().now_ms();
    let mut reports = Vec::new();
    for (index, trigger) in workflow.triggers().iter().enumerate() {
        let state = workflows
            .store()
            .schedule(&schedule_key(workflow.name(), index))
            .await
            .unwrap_or_default();
        reports.push(TriggerReport {
            index,
            last_due_ms: state.last_due_ms,
            next_due_ms: next_due(trigger, state.last_due_ms.unwrap_or(now)),
            missed: state.missed,
        });
    }
    reports
}

/// Fires the schedules of every workflow until `stop` is cancelled. In a cluster only the
/// node holding the scheduler singleton runs it.
pub async fn run_scheduler(workflows: Workflows, stop: CancellationToken) {
    // The scheduler is the only writer of schedule states: each is read from the store
    // once, then kept here as written.
    let mut states = HashMap::new();
    loop {
        let wake = tick(&workflows, &mut states).await;
        let clock = workflows.clock();
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep_until(wake) => {}
            () = workflows.catalog().changed() => {}
        }
    }
}

/// Handles every due firing; answers when to look again.
async fn tick(workflows: &Workflows, states: &mut HashMap<String, ScheduleState>) -> i64 {
    let now = workflows.clock().now_ms();
    let mut wake = now + LOOK_AGAIN_MS;
    for workflow in workflows.catalog().list() {
        let timed = workflow.triggers().iter().enumerate();
        for (index, trigger) in timed.filter(|(_, trigger)| trigger.when.is_timed()) {
            match handle_trigger(workflows, states, &workflow, index, trigger, now).await {
                Ok(Some(next)) => wake = wake.min(next),
                Ok(None) => {}
                // Looked at again soon; the firing is not lost.
                Err(error) => {
                    tracing::error!(workflow = workflow.name(), trigger = index, %error, "a schedule could not fire; it is tried again");
                    wake = wake.min(now + 5_000);
                }
            }
        }
    }
    wake
}

async fn handle_trigger(
    workflows: &Workflows,
    states: &mut HashMap<String, ScheduleState>,
    workflow: &Workflow,
    index: usize,
    trigger: &Trigger,
    now: i64,
) -> Result<Option<i64>, crate::runs::WorkflowError> {
    let key = schedule_key(workflow.name(), index);
    let mut state = match states.get(&key) {
        Some(kept) => kept.clone(),
        None => workflows.store().schedule(&key).await?,
    };
    let decision = decide(trigger, state.last_due_ms, now);
    if let Some(due) = decision.fire {
        workflows
            .start(StartRun {
                workflow: workflow.name().to_owned(),
                input: trigger.input.clone(),
                cause: Cause::Schedule {
                    trigger: index,
                    due_ms: due,
                },
                run: Some(firing_run_id(workflow.name(), index, due)),
            })
            .await?;
        let lag = (now - due).max(0) as f64 / 1000.0;
        metrics::histogram!(names::SCHEDULE_LAG_SECONDS).record(lag);
    }
    for &due in &decision.missed {
        tracing::warn!(
            workflow = workflow.name(),
            trigger = index,
            due_ms = due,
            "a scheduled firing was missed: the node was down past its catch-up window"
        );
        metrics::counter!(names::SCHEDULE_MISSED, "workflow" => workflow.name().to_owned())
            .increment(1);
        state.missed.push(MissedFiring {
            trigger: index,
            due_ms: due,
            noticed_ms: now,
        });
    }
    let excess = state.missed.len().saturating_sub(MISSED_KEPT);
    state.missed.drain(..excess);
    if decision.last_due != state.last_due_ms || !decision.missed.is_empty() {
        state.last_due_ms = decision.last_due;
        workflows.store().set_schedule(&key, &state).await?;
    }
    states.insert(key, state);
    Ok(decision.last_due.and_then(|last| next_due(trigger, last)))
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
