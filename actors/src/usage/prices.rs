//! `[[prices]]`: what each model costs per million tokens, as the user wrote it.
//!
//! A price names the `model` (as its provider asks for it) and optionally the `provider`
//! (a `[[providers]]` name) when two providers serve one model at different prices; a
//! provider's own price wins over a price for the model alone. Prompt tokens read from the
//! provider's cache cost `cache_read` and tokens written to it `cache_write` when given,
//! else the `input` price.

use serde::{Deserialize, Serialize};

use super::cost::Cost;
use crate::provider::Usage;

/// One model's price, per million tokens, in the table's currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub input: f64,
    pub output: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

impl Price {
    fn cost(&self, usage: &Usage) -> Cost {
        Cost::of_tokens(usage.uncached_input_tokens(), self.input)
            + Cost::of_tokens(usage.output_tokens, self.output)
            + Cost::of_tokens(
                usage.cache_read_tokens,
                self.cache_read.unwrap_or(self.input),
            )
            + Cost::of_tokens(
                usage.cache_write_tokens,
                self.cache_write.unwrap_or(self.input),
            )
    }

    /// The first of its amounts that is not a price, by key.
    fn invalid_amount(&self) -> Option<(&'static str, f64)> {
        [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
        ]
        .into_iter()
        .find_map(|(key, amount)| {
            amount
                .filter(|amount| !amount.is_finite() || *amount < 0.0)
                .map(|amount| (key, amount))
        })
    }
}

/// Why `[[prices]]` was refused; [`PriceError::key`] names the key.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error("{amount} is not a price (a finite amount, 0 or more)")]
    Amount {
        index: usize,
        key: &'static str,
        amount: f64,
    },
    #[error("the name is empty")]
    EmptyModel { index: usize },
    #[error("model `{model}` is priced twice{for_provider}")]
    Twice {
        index: usize,
        model: String,
        for_provider: String,
    },
}

impl PriceError {
    /// The configuration key at fault (`prices[1].input`).
    pub fn key(&self) -> String {
        match self {
            Self::Amount { index, key, .. } => format!("prices[{index}].{key}"),
            Self::EmptyModel { index } => format!("prices[{index}].model"),
            Self::Twice { index, .. } => format!("prices[{index}]"),
        }
    }
}

/// Every price, validated.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    prices: Vec<Price>,
}

impl PriceTable {
    /// The table of `prices`; refuses negative or non-finite amounts, empty model names,
    /// and a model priced twice for the same provider.
    pub fn new(prices: Vec<Price>) -> Result<Self, PriceError> {
        for (index, price) in prices.iter().enumerate() {
            if let Some((key, amount)) = price.invalid_amount() {
                return Err(PriceError::Amount { index, key, amount });
            }
            if price.model.trim().is_empty() {
                return Err(PriceError::EmptyModel { index });
            }
            let twice = prices[..index]
                .iter()
                .any(|earlier| earlier.model == price.model && earlier.provider == price.provider);
            if twice {
                return Err(PriceError::Twice {
                    index,
                    model: price.model.clone(),
                    for_provider: price
                        .provider
                        .as_ref()
                        .map(|provider| format!(" for provider `{provider}`"))
                        .unwrap_or_default(),
                });
            }
        }
        Ok(Self { prices })
    }

    /// What `usage` of `model` served by `provider` costs; `None` when it has no price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<Cost> {
        let of_model = || self.prices.iter().filter(move |price| price.model == model);
        of_model()
            .find(|price| price.provider.as_deref() == Some(provider))
            .or_else(|| of_model().find(|price| price.provider.is_none()))
            .map(|price| price.cost(usage))
    }
}
