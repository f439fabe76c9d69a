//! Token accounting: what every turn used of which model, what it cost, and the budgets
//! that stop a person (or everyone) once a day's share is spent.
//!
//! - **Per turn.** A session adds up the usage its provider(s) reported for each model call
//!   of a turn (streamed or not, cached prompt tokens included) and, when the turn ends,
//!   hands the [`UsageBook`] one [`UsageRecord`] per model that served it. Failed turns
//!   are counted too: their tokens were spent.
//! - **Priced when spent.** The [`PriceTable`] (`[[prices]]`, editable by users) prices a
//!   record once, so a price changed later does not rewrite what was already spent.
//! - **Kept.** Records go to a [`UsageLedger`] ([`LocalUsageLedger`]: `usage.redb` in the
//!   data dir; in a cluster, a JetStream stream every node follows, so each node's book
//!   holds every node's turns) and are summed in memory by the hour, so reports and budget
//!   checks never read the disk.
//! - **Budgets.** [`Budgets`] (tokens or money per UTC day, per person and for everyone)
//!   are checked before each model call of a turn.

mod book;
mod budgets;
mod cost;
mod local;
mod prices;
#[cfg(test)]
mod tests;

pub use book::{Grouping, KEPT_DAYS, Totals, UsageBook, UsageReport, UsageRow};
pub use budgets::{Budget, BudgetError, BudgetExceeded, Budgets, Limit, cost_limit};
pub use cost::Cost;
pub use local::LocalUsageLedger;
pub use prices::{Price, PriceError, PriceTable};

use serde::{Deserialize, Serialize};

use crate::model_worker::ServedBy;
use crate::provider::Usage;

/// What one turn spent of one model, before it is priced ([`UsageBook::price`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spent {
    /// When the turn ended (unix seconds).
    pub at: u64,
    pub person: String,
    pub channel: String,
    pub by: ServedBy,
    pub calls: u32,
    pub usage: Usage,
}

/// What one turn used of one model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the turn ended (unix seconds).
    pub at: u64,
    /// Whom the turn was for (`person:<id>` for a linked person, else `platform:sender`).
    pub person: String,
    /// The platform the message came from (`web`, `telegram`, `openai`, …).
    pub channel: String,
    /// The configured provider that answered (a fallback's own name when one did).
    pub provider: String,
    /// The model that provider asks for.
    pub model: String,
    /// Model calls of the turn this model answered.
    pub calls: u32,
    pub usage: Usage,
    /// What the usage cost at the prices of the moment; zero when the model has no price.
    pub cost: Cost,
    /// Whether the model had a price.
    pub priced: bool,
}

/// Counts a turn (or call) a guard stopped, by `guard`: `turn_tokens`, `tool_rounds`,
/// `budget`.
pub fn guarded(guard: &'static str) {
    metrics::counter!(crate::metrics::TURNS_GUARDED, "guard" => guard).increment(1);
}

/// Why usage could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("the usage ledger failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("a stored usage record cannot be read: {0}")]
    Corrupt(#[source] bincode::error::DecodeError),
}

impl UsageError {
    /// The store underneath failed with `error`.
    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Store(Box::new(error))
    }
}

/// What answers once an append is durable.
pub type Appended =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), UsageError>> + Send + 'static>>;

/// Where records kept by others go, as they arrive ([`UsageLedger::follow`]).
pub type RecordSink = Box<dyn Fn(UsageRecord) + Send + Sync>;

/// Where usage records are kept for good.
#[async_trait::async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// Queues `records` (one turn's) at once, in call order; the answer comes once they
    /// are durable.
    fn append(&self, records: Vec<UsageRecord>) -> Appended;

    /// Every record kept at or after `since` (unix seconds), oldest first.
    async fn since(&self, since: u64) -> Result<Vec<UsageRecord>, UsageError>;

    /// From the end of the last [`UsageLedger::since`] on, hands `sink` every record that
    /// other nodes keep (this node counts its own as it makes them). A ledger only this
    /// node writes (the default) has nothing to follow.
    fn follow(&self, sink: RecordSink) {
        drop(sink);
    }
}
