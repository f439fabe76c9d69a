//! What a turn spends: the usage of each model call, summed per model that served it,
//! checked against the daily budgets before each call and against the runaway guard before
//! each further round, and handed to the [`UsageBook`] when the turn ends, however it ends.

use std::sync::Arc;

use super::SessionState;
use crate::message::{InboundMessage, unix_now};
use crate::model_worker::{Served, ServedBy};
use crate::provider::Usage;
use crate::turn::{ErrorCode, TurnError};
use crate::usage::{Spent, UsageBook, UsageRecord, guarded};

/// The usage of one turn so far, by the model that served it.
#[derive(Debug, Default)]
pub(super) struct TurnSpend {
    /// Who served, its calls and their usage; a turn rarely sees more than one.
    served: Vec<(ServedBy, u32, Usage)>,
}

impl TurnSpend {
    /// Adds what one model call reported (a call that reported no usage, as the echo
    /// provider's, is not counted).
    pub(super) fn add(&mut self, served: &Served) {
        let Some(usage) = served.completion.usage else {
            return;
        };
        let found = self.served.iter_mut().find(|(by, ..)| *by == served.by);
        match found {
            Some((_, calls, sum)) => {
                *calls += 1;
                *sum += usage;
            }
            None => self.served.push((served.by.clone(), 1, usage)),
        }
    }

    /// The whole turn's usage; `None` when no call reported any.
    pub(super) fn total(&self) -> Option<Usage> {
        self.served
            .iter()
            .map(|(_, _, usage)| *usage)
            .reduce(|mut sum, usage| {
                sum += usage;
                sum
            })
    }

    fn total_tokens(&self) -> u64 {
        self.served
            .iter()
            .map(|(_, _, usage)| usage.total_tokens())
            .sum()
    }

    /// One record per model, priced by `book`.
    fn into_records(self, book: &UsageBook, person: &str, channel: &str) -> Vec<UsageRecord> {
        let at = unix_now();
        self.served
            .into_iter()
            .map(|(by, calls, usage)| {
                book.price(Spent {
                    at,
                    person: person.to_owned(),
                    channel: channel.to_owned(),
                    by,
                    calls,
                    usage,
                })
            })
            .collect()
    }
}

impl SessionState {
    fn usage_book(&self) -> Option<&Arc<UsageBook>> {
        self.context.usage.as_ref()
    }

    /// Refuses a model call once `person`'s budget, or everyone's, is spent for the day.
    pub(super) fn within_budget(&self, person: &str) -> Result<(), TurnError> {
        let Some(book) = self.usage_book() else {
            return Ok(());
        };
        book.admit(person, unix_now()).map_err(|exceeded| {
            tracing::warn!(%person, %exceeded, "turn refused: budget spent");
            TurnError::new(ErrorCode::BudgetExceeded, exceeded.to_string())
        })
    }

    /// Stops the turn before another model call once its spend is past the runaway guard.
    pub(super) fn within_turn_limit(&self, spend: &TurnSpend) -> Result<(), TurnError> {
        let limit = self
            .usage_book()
            .and_then(|book| book.max_tokens_per_turn());
        let used = spend.total_tokens();
        match limit {
            Some(limit) if used > limit => {
                guarded("turn_tokens");
                tracing::warn!(session = %self.key, used, limit, "turn stopped: too many tokens");
                Err(TurnError::new(
                    ErrorCode::TurnTokenLimit,
                    format!(
                        "this turn was stopped after using {used} tokens, more than the \
                         {limit} one turn may use (max_tokens_per_turn)"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Hands the turn's spend for `message` to the usage book.
    pub(super) fn keep_spend(&self, spend: TurnSpend, message: &InboundMessage) {
        // A turn whose model reported no usage has nothing to count.
        let Some(book) = self.usage_book().filter(|_| !spend.served.is_empty()) else {
            return;
        };
        let person = self.person_of(message);
        book.record(spend.into_records(book, &person, message.platform()));
    }
}
