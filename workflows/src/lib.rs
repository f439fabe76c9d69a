//! Durable workflows and schedules: steps that run exactly once, across restarts and the
//! loss of a node.
//!
//! - [`definition`]: a workflow as written (TOML, or JSON through the API);
//! - [`plan`]: the validated workflow the engine runs (errors name the key);
//! - [`template`]: the `{{ steps.<id>.output }}` syntax that feeds outputs forward;
//! - [`effects`]: what steps do to the world, with their idempotency keys;
//! - [`journal`]: a run's records, its summary, and what a replay gives back;
//! - [`local`]: the journal store of a single node (`workflows.redb`); [`jetstream`]: the
//!   store of a cluster;
//! - [`placement`]: which node runs a run in a cluster; [`routing`]: reaching it over NATS;
//! - [`engine`]: the interpreter of one run;
//! - [`run`]: one run as an actor; [`runs`]: the actor that supervises them, and the
//!   [`runs::Workflows`] handle;
//! - [`replies`]: runs waiting for a person's reply; [`waits`]: who they wait for, in a
//!   cluster;
//! - [`catalog`]: the definitions a node knows; [`shared`]: those of a cluster;
//! - [`events`]: runs started by a message that matches a pattern;
//! - [`schedule`]: triggers, catch-up and missed firings; [`cron`]: cron patterns in a zone;
//! - [`clock`]: wall-clock time that tests control.
//! - [`skill`]: the `workflows` skill, the assistant's tools over a person's workflows;
//! - [`view`]: a run's journal step by step, as the API and the CLI show it;
//! - [`testing`]: doubles of the engine's own traits, for tests.

pub mod catalog;
pub mod clock;
pub mod cron;
pub mod definition;
pub mod effects;
pub mod engine;
pub mod events;
pub mod jetstream;
pub mod journal;
pub mod local;
pub mod metrics;
pub mod placement;
pub mod plan;
pub mod replies;
pub mod routing;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod shared;
pub mod skill;
pub mod template;
pub mod testing;
pub mod view;
pub mod waits;

pub use catalog::Catalog;
pub use clock::Clock;
pub use definition::WorkflowDefinition;
pub use effects::{Effects, StepError, StepErrorCode};
pub use engine::{Control, HoldPoint, RunLimits};
pub use journal::{Cause, Record, RunStatus, RunSummary, WorkflowStore};
pub use local::LocalWorkflowStore;
pub use runs::{EngineParts, StartRun, Workflows};
