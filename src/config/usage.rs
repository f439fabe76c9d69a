//! `[[prices]]` and `[budgets]`: what models cost, and how much may be spent (see
//! `troupe_actors::usage`).

use serde::{Deserialize, Serialize};
use troupe_actors::usage::{
    Budget, BudgetError, Budgets, Price, PriceError, PriceTable, cost_limit,
};

use super::{ConfigError, invalid};

/// `[budgets]`: tokens or money per UTC day, for everyone together and per person, and the
/// runaway guard of one turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetsConfig {
    /// Everyone's tokens per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tokens_per_day: Option<u64>,
    /// Everyone's spending per day, in the prices' currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cost_per_day: Option<f64>,
    /// The most tokens one turn (or scheduled job) may use before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens_per_turn: Option<u64>,
    /// `[[budgets.people]]`: one person's own budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) people: Vec<PersonBudgetConfig>,
}

/// One `[[budgets.people]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonBudgetConfig {
    /// As usage reports name people: `person:<id>` for a linked identity, else
    /// `platform:sender` (`telegram:12345`).
    pub(crate) person: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tokens_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cost_per_day: Option<f64>,
}

fn budget_error(error: &BudgetError) -> ConfigError {
    invalid(&error.key(), error.to_string())
}

impl BudgetsConfig {
    /// The budgets, validated; the error names the key.
    pub(crate) fn budgets(&self) -> Result<Budgets, ConfigError> {
        let everyone = Budget {
            tokens_per_day: self.tokens_per_day,
            cost_per_day: cost_limit("budgets.cost_per_day", self.cost_per_day)
                .map_err(|error| budget_error(&error))?,
        };
        let people = self
            .people
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let key = format!("budgets.people[{index}].cost_per_day");
                let budget = Budget {
                    tokens_per_day: entry.tokens_per_day,
                    cost_per_day: cost_limit(key, entry.cost_per_day)
                        .map_err(|error| budget_error(&error))?,
                };
                Ok((entry.person.clone(), budget))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        if self.max_tokens_per_turn == Some(0) {
            return Err(invalid("budgets.max_tokens_per_turn", "must be at least 1"));
        }
        Budgets::new(everyone, people)
            .map(|budgets| budgets.with_max_tokens_per_turn(self.max_tokens_per_turn))
            .map_err(|error| budget_error(&error))
    }
}

/// `[[prices]]`, validated; the error names the key.
pub(crate) fn price_table(prices: &[Price]) -> Result<PriceTable, ConfigError> {
    PriceTable::new(prices.to_vec())
        .map_err(|error: PriceError| invalid(&error.key(), error.to_string()))
}
