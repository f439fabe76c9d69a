//! Daily budgets: how many tokens, or how much money, a person (or everyone together) may
//! spend per UTC day. A turn that would start a model call past one is refused with a
//! message that says whose budget, how much of it is spent, and when it renews.

use std::collections::HashMap;

use super::book::Totals;
use super::cost::Cost;

/// A day's allowance: tokens, money, or both (`None`: no limit of that kind).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budget {
    pub tokens_per_day: Option<u64>,
    pub cost_per_day: Option<Cost>,
}

impl Budget {
    /// The first of its limits that `spent` has reached.
    fn reached(&self, spent: &Totals) -> Option<Limit> {
        let tokens = self
            .tokens_per_day
            .filter(|limit| spent.usage.total_tokens() >= *limit)
            .map(|limit| Limit::Tokens {
                limit,
                spent: spent.usage.total_tokens(),
            });
        let cost = self
            .cost_per_day
            .filter(|limit| spent.cost >= *limit)
            .map(|limit| Limit::Cost {
                limit,
                spent: spent.cost,
            });
        tokens.or(cost)
    }

    const fn is_unlimited(&self) -> bool {
        self.tokens_per_day.is_none() && self.cost_per_day.is_none()
    }
}

/// A limit that was reached, and what was spent of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Tokens { limit: u64, spent: u64 },
    Cost { limit: Cost, spent: Cost },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tokens { limit, spent } => write!(formatter, "{spent} of {limit} tokens"),
            Self::Cost { limit, spent } => {
                write!(formatter, "{:.2} of {:.2}", spent.units(), limit.units())
            }
        }
    }
}

/// A turn refused because a budget is spent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error("{person} has used today's budget: {limit} (it renews at 00:00 UTC)")]
    Person { person: String, limit: Limit },
    #[error("today's budget for everyone is used: {limit} (it renews at 00:00 UTC)")]
    Everyone { limit: Limit },
}

/// Why `[budgets]` was refused; [`BudgetError::key`] names the key.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("{amount} is not an amount of money (a finite amount, 0 or more)")]
    Cost { key: String, amount: f64 },
    #[error("the name is empty")]
    EmptyPerson { index: usize },
    #[error("`{person}` has a budget already")]
    Twice { index: usize, person: String },
}

impl BudgetError {
    /// The configuration key at fault (`budgets.people[0].person`).
    pub fn key(&self) -> String {
        match self {
            Self::Cost { key, .. } => key.clone(),
            Self::EmptyPerson { index } | Self::Twice { index, .. } => {
                format!("budgets.people[{index}].person")
            }
        }
    }
}

/// Every budget, validated.
#[derive(Clone, Debug)]
pub struct Budgets {
    everyone: Budget,
    people: HashMap<String, Budget>,
    /// Whether no budget is set at all (checked before every model call).
    unlimited: bool,
    /// The runaway guard: the most tokens one turn may use (`None`: no limit).
    max_tokens_per_turn: Option<u64>,
}

impl Default for Budgets {
    /// No budget and no guard.
    fn default() -> Self {
        Self {
            everyone: Budget::default(),
            people: HashMap::new(),
            unlimited: true,
            max_tokens_per_turn: None,
        }
    }
}

/// `amount` as a [`Cost`], or why it is none; `key` names it in the configuration.
pub fn cost_limit(
    key: impl Into<String>,
    amount: Option<f64>,
) -> Result<Option<Cost>, BudgetError> {
    match amount {
        Some(amount) if !amount.is_finite() || amount < 0.0 => Err(BudgetError::Cost {
            key: key.into(),
            amount,
        }),
        amount => Ok(amount.map(Cost::from_units)),
    }
}

impl Budgets {
    /// `everyone`'s budget and each person's (`person:<id>` or `platform:sender`, as usage
    /// reports name them).
    pub fn new(everyone: Budget, people: Vec<(String, Budget)>) -> Result<Self, BudgetError> {
        let mut by_person = HashMap::with_capacity(people.len());
        for (index, (person, budget)) in people.into_iter().enumerate() {
            if person.trim().is_empty() {
                return Err(BudgetError::EmptyPerson { index });
            }
            if by_person.contains_key(&person) {
                return Err(BudgetError::Twice { index, person });
            }
            by_person.insert(person, budget);
        }
        let unlimited = everyone.is_unlimited() && by_person.values().all(Budget::is_unlimited);
        Ok(Self {
            everyone,
            people: by_person,
            unlimited,
            max_tokens_per_turn: None,
        })
    }

    /// With the runaway guard: a turn stops once it used more than `tokens`.
    #[must_use]
    pub const fn with_max_tokens_per_turn(mut self, tokens: Option<u64>) -> Self {
        self.max_tokens_per_turn = tokens;
        self
    }

    /// The most tokens one turn may use.
    pub const fn max_tokens_per_turn(&self) -> Option<u64> {
        self.max_tokens_per_turn
    }

    /// Whether any budget is set (else nothing needs checking).
    pub const fn is_unlimited(&self) -> bool {
        self.unlimited
    }

    /// The budget `person` has reached, given what they and everyone spent today.
    pub(super) fn check(
        &self,
        person: &str,
        spent_by_person: &Totals,
        spent_by_everyone: &Totals,
    ) -> Result<(), BudgetExceeded> {
        if let Some(limit) = self
            .people
            .get(person)
            .and_then(|budget| budget.reached(spent_by_person))
        {
            return Err(BudgetExceeded::Person {
                person: person.to_owned(),
                limit,
            });
        }
        match self.everyone.reached(spent_by_everyone) {
            Some(limit) => Err(BudgetExceeded::Everyone { limit }),
            None => Ok(()),
        }
    }
}
