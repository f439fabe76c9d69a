//! `[workflows]`: the durable workflow engine (definitions in `<data_dir>/workflows/`).

use serde::{Deserialize, Serialize};
use troupe_workflows::{HoldPoint, RunLimits};

use super::{ConfigError, invalid};

/// `[workflows]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowsConfig {
    /// Whether the node runs workflows and fires their schedules.
    #[serde(default = "default_enabled")]
    pub(crate) enabled: bool,
    /// Largest one run's journal may grow; a run that would pass it fails with
    /// `journal_too_large`.
    #[serde(default = "default_journal_limit_bytes")]
    pub(crate) journal_limit_bytes: usize,
    /// Most steps one run may enter (nested and sub-workflow steps count); more fails the
    /// run with `too_many_steps`.
    #[serde(default = "default_max_steps_per_run")]
    pub(crate) max_steps_per_run: u32,
    /// Runs that ended this many days ago are deleted with their journals.
    #[serde(default = "default_keep_runs_days")]
    pub(crate) keep_runs_days: u32,
    /// For crash tests only: hold every run at each of these points (`before:<step>`,
    /// `after:<step>`, `finished:<step>`), once, so a test can kill the node there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) test_hold: Vec<String>,
}

const fn default_enabled() -> bool {
    true
}

const fn default_journal_limit_bytes() -> usize {
    4 * 1024 * 1024
}

const fn default_max_steps_per_run() -> u32 {
    1000
}

const fn default_keep_runs_days() -> u32 {
    30
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            journal_limit_bytes: default_journal_limit_bytes(),
            max_steps_per_run: default_max_steps_per_run(),
            keep_runs_days: default_keep_runs_days(),
            test_hold: Vec::new(),
        }
    }
}

impl WorkflowsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.journal_limit_bytes < 64 * 1024 {
            return Err(invalid(
                "workflows.journal_limit_bytes",
                "must be at least 65536",
            ));
        }
        if self.max_steps_per_run == 0 {
            return Err(invalid("workflows.max_steps_per_run", "must be at least 1"));
        }
        if !(1..=3650).contains(&self.keep_runs_days) {
            return Err(invalid(
                "workflows.keep_runs_days",
                "must be from 1 to 3650",
            ));
        }
        for hold in &self.test_hold {
            let point = hold.split_once(':').map(|(point, _)| point);
            if !matches!(point, Some("before" | "after" | "finished")) {
                return Err(invalid(
                    "workflows.test_hold",
                    "must be before:<step>, after:<step> or finished:<step>",
                ));
            }
        }
        Ok(())
    }

    /// How long an ended run is kept.
    pub(crate) fn keep_runs(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.keep_runs_days) * 86_400)
    }

    pub(crate) fn limits(&self) -> RunLimits {
        RunLimits {
            max_steps: self.max_steps_per_run,
            hold: self.test_hold.iter().cloned().map(HoldPoint).collect(),
        }
    }
}
