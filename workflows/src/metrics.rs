//! The workflow engine's metric names (Prometheus, on `/metrics`).

/// Runs begun, by `workflow` and `cause` (`manual`, `schedule`).
pub const RUNS_STARTED: &str = "troupe_workflow_runs_started_total";
/// Runs ended, by `workflow` and `status` (`finished`, `failed`, `cancelled`).
pub const RUNS_ENDED: &str = "troupe_workflow_runs_ended_total";
/// Runs taken up again from their journal (after a restart or a node's loss).
pub const RUNS_RESUMED: &str = "troupe_workflow_runs_resumed_total";
/// Runs going on now.
pub const RUNS_ACTIVE: &str = "troupe_workflow_runs_active";
/// Step attempts that failed and were tried again, by `kind`.
pub const STEP_RETRIES: &str = "troupe_workflow_step_retries_total";
/// One step attempt's duration, by `kind` (`model`, `tool`, `send`, …) and `outcome`.
pub const STEP_SECONDS: &str = "troupe_workflow_step_seconds";
/// Steps replayed from the journal instead of run again.
pub const STEPS_REPLAYED: &str = "troupe_workflow_steps_replayed_total";
/// How late a schedule's firing began its run, from its due time.
pub const SCHEDULE_LAG_SECONDS: &str = "troupe_workflow_schedule_lag_seconds";
/// Firings recorded as missed (down past their catch-up window).
pub const SCHEDULE_MISSED: &str = "troupe_workflow_schedule_missed_total";
