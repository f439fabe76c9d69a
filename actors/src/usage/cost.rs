//! An amount of money in the price table's currency, counted in billionths so that sums
//! of many small costs are exact; written as a decimal number of units.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_UNIT: f64 = 1e9;

/// An amount of money, never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    nanos: u64,
}

impl Cost {
    pub const ZERO: Self = Self { nanos: 0 };

    /// `units` of the currency (negative and non-finite amounts count as zero).
    pub fn from_units(units: f64) -> Self {
        let nanos = (units * NANOS_PER_UNIT).round();
        Self {
            // A float-to-int `as` saturates: huge amounts are the largest one, NaN is 0.
            nanos: if nanos > 0.0 { nanos as u64 } else { 0 },
        }
    }

    /// `tokens` at `per_million` units per million tokens.
    pub fn of_tokens(tokens: u64, per_million: f64) -> Self {
        Self::from_units(tokens as f64 * per_million / 1e6)
    }

    /// The amount in units of the currency.
    pub fn units(self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT
    }
}

impl std::ops::Add for Cost {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:.6}", self.units())
    }
}

impl Serialize for Cost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.units())
    }
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        f64::deserialize(deserializer).map(Self::from_units)
    }
}
