//! The [`UsageBook`]: usage summed by the hour in memory, fed by every turn and loaded from
//! the ledger at start, answering reports and budget checks without reading the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::ser::SerializeStruct;

use super::budgets::{BudgetExceeded, Budgets};
use super::cost::Cost;
use super::guarded;
use super::prices::PriceTable;
use super::{Spent, UsageError, UsageLedger, UsageRecord};
use crate::message::unix_now;
use crate::metrics as metric_names;
use crate::model_worker::Served;
use crate::provider::Usage;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
/// How far back the book holds hourly sums (reports reach this far; the ledger keeps
/// every record longer).
pub const KEPT_DAYS: u64 = 35;

/// What some turns used, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub turns: u64,
    pub calls: u64,
    pub usage: Usage,
    pub cost: Cost,
    /// Turns of models without a price (their cost counts as zero).
    pub unpriced: u64,
}

impl Totals {
    fn add(&mut self, other: &Self) {
        self.turns += other.turns;
        self.calls += other.calls;
        self.usage += other.usage;
        self.cost += other.cost;
        self.unpriced += other.unpriced;
    }

    fn of(record: &UsageRecord) -> Self {
        Self {
            turns: 1,
            calls: u64::from(record.calls),
            usage: record.usage,
            cost: record.cost,
            unpriced: u64::from(!record.priced),
        }
    }
}

impl Serialize for Totals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut totals = serializer.serialize_struct("Totals", 9)?;
        totals.serialize_field("turns", &self.turns)?;
        totals.serialize_field("model_calls", &self.calls)?;
        totals.serialize_field("input_tokens", &self.usage.input_tokens)?;
        totals.serialize_field("output_tokens", &self.usage.output_tokens)?;
        totals.serialize_field("cache_read_tokens", &self.usage.cache_read_tokens)?;
        totals.serialize_field("cache_write_tokens", &self.usage.cache_write_tokens)?;
        totals.serialize_field("total_tokens", &self.usage.total_tokens())?;
        totals.serialize_field("cost", &self.cost)?;
        totals.serialize_field("unpriced_turns", &self.unpriced)?;
        totals.end()
    }
}

/// What a report groups usage by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    Person,
    Channel,
    Provider,
    Model,
    /// The UTC day, `YYYY-MM-DD`.
    Day,
}

/// One group of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub key: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Usage since a moment, grouped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// Unix seconds of the first hour counted (`since`, rounded down to the hour).
    pub since: u64,
    pub by: Grouping,
    /// Largest cost first (then most tokens); by day, oldest first.
    pub rows: Vec<UsageRow>,
    pub total: Totals,
}

/// Whose usage an hour's sum is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    person: Arc<str>,
    channel: Arc<str>,
    provider: Arc<str>,
    model: Arc<str>,
}

impl Key {
    fn group(&self, by: Grouping, hour: u64) -> String {
        match by {
            Grouping::Person => self.person.to_string(),
            Grouping::Channel => self.channel.to_string(),
            Grouping::Provider => self.provider.to_string(),
            Grouping::Model => self.model.to_string(),
            Grouping::Day => day_name(hour),
        }
    }
}

/// The UTC day of unix second `at`, as `YYYY-MM-DD`.
fn day_name(at: u64) -> String {
    i64::try_from(at)
        .ok()
        .and_then(|at| jiff::Timestamp::from_second(at).ok())
        .map_or_else(|| at.to_string(), |at| at.strftime("%Y-%m-%d").to_string())
}

/// Today's spending, for budgets.
#[derive(Default)]
struct Today {
    /// Unix second the day began.
    day: u64,
    everyone: Totals,
    people: HashMap<Arc<str>, Totals>,
}

#[derive(Default)]
struct Sums {
    hours: BTreeMap<(u64, Key), Totals>,
    today: Today,
    /// The first hour held: older ones are let go as time passes.
    first_hour: u64,
}

impl Sums {
    fn add(&mut self, record: &UsageRecord) {
        let totals = Totals::of(record);
        let key = Key {
            person: record.person.as_str().into(),
            channel: record.channel.as_str().into(),
            provider: record.provider.as_str().into(),
            model: record.model.as_str().into(),
        };
        let day = record.at - record.at % DAY;
        if day > self.today.day {
            self.today = Today {
                day,
                ..Today::default()
            };
        }
        if day == self.today.day {
            self.today.everyone.add(&totals);
            self.today
                .people
                .entry(Arc::clone(&key.person))
                .or_default()
                .add(&totals);
        }
        let hour = record.at - record.at % HOUR;
        if hour < self.first_hour {
            return;
        }
        self.hours.entry((hour, key)).or_default().add(&totals);
        self.let_go_before(hour.saturating_sub(KEPT_DAYS * DAY));
    }

    /// Drops the hours before `first_hour`, once a day at most.
    fn let_go_before(&mut self, first_hour: u64) {
        if first_hour < self.first_hour + DAY {
            return;
        }
        self.hours = self.hours.split_off(&(first_hour, Key::first()));
        self.first_hour = first_hour;
    }
}

fn lock(sums: &Mutex<Sums>) -> std::sync::MutexGuard<'_, Sums> {
    sums.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Usage of every turn this node knows of, priced, summed, and checked against budgets.
pub struct UsageBook {
    prices: PriceTable,
    budgets: Budgets,
    ledger: Arc<dyn UsageLedger>,
    /// Shared with the ledger's follower, which adds other nodes' records.
    sums: Arc<Mutex<Sums>>,
}

impl std::fmt::Debug for UsageBook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("UsageBook").finish_non_exhaustive()
    }
}

impl UsageBook {
    /// The book over `ledger`, loaded with what it holds.
    pub async fn open(
        ledger: Arc<dyn UsageLedger>,
        prices: PriceTable,
        budgets: Budgets,
    ) -> Result<Self, UsageError> {
        let book = Self {
            prices,
            budgets,
            sums: Arc::default(),
            ledger: Arc::clone(&ledger),
        };
        let records = ledger
            .since(unix_now().saturating_sub(KEPT_DAYS * DAY))
            .await?;
        let mut sums = book.sums();
        for record in &records {
            sums.add(record);
        }
        drop(sums);
        let followed = Arc::clone(&book.sums);
        ledger.follow(Box::new(move |record| lock(&followed).add(&record)));
        Ok(book)
    }

    fn sums(&self) -> std::sync::MutexGuard<'_, Sums> {
        lock(&self.sums)
    }

    /// What was `spent`, at today's prices.
    pub fn price(&self, spent: Spent) -> UsageRecord {
        let cost = self
            .prices
            .cost(&spent.by.provider, &spent.by.model, &spent.usage);
        UsageRecord {
            at: spent.at,
            person: spent.person,
            channel: spent.channel,
            provider: spent.by.provider.to_string(),
            model: spent.by.model.to_string(),
            calls: spent.calls,
            usage: spent.usage,
            priced: cost.is_some(),
            cost: cost.unwrap_or(Cost::ZERO),
        }
    }

    /// Counts one model call outside any session, for `requester` (`platform:sender`,
    /// whose platform is its channel); a call that reported no usage is not counted.
    pub fn record_call(&self, served: &Served, requester: &str) {
        let Some(usage) = served.completion.usage else {
            return;
        };
        let channel = requester
            .split_once(':')
            .map_or(requester, |(platform, _)| platform);
        let record = self.price(Spent {
            at: unix_now(),
            person: requester.to_owned(),
            channel: channel.to_owned(),
            by: served.by.clone(),
            calls: 1,
            usage,
        });
        self.record(vec![record]);
    }

    /// Counts `records` (one turn's) now, and queues them for the ledger at once (a
    /// failure to keep them is logged and counted; the turn is not failed for it).
    pub fn record(&self, records: Vec<UsageRecord>) {
        if records.is_empty() {
            return;
        }
        let mut sums = self.sums();
        for record in &records {
            sums.add(record);
        }
        drop(sums);
        let appended = self.ledger.append(records);
        tokio::spawn(async move {
            if let Err(error) = appended.await {
                metrics::counter!(metric_names::USAGE_NOT_KEPT).increment(1);
                tracing::error!(%error, "a turn's usage was counted but not kept");
            }
        });
    }

    /// The runaway guard: the most tokens one turn may use.
    pub const fn max_tokens_per_turn(&self) -> Option<u64> {
        self.budgets.max_tokens_per_turn()
    }

    /// Whether `person` may spend more today (UTC), at unix second `now`; a refusal is
    /// counted (`troupe_turns_guarded_total{guard="budget"}`).
    pub fn admit(&self, person: &str, now: u64) -> Result<(), BudgetExceeded> {
        if self.budgets.is_unlimited() {
            return Ok(());
        }
        let sums = self.sums();
        let nothing = Totals::default();
        let (by_person, by_everyone) = if sums.today.day == now - now % DAY {
            let by_person = sums.today.people.get(person).unwrap_or(&nothing);
            (by_person, &sums.today.everyone)
        } else {
            (&nothing, &nothing)
        };
        let admitted = self.budgets.check(person, by_person, by_everyone);
        drop(sums);
        if admitted.is_err() {
            guarded("budget");
        }
        admitted
    }

    /// Usage from `since` (unix seconds, rounded down to the hour, and no further back
    /// than [`KEPT_DAYS`]) grouped `by`.
    pub fn report(&self, by: Grouping, since: u64) -> UsageReport {
        let mut groups: HashMap<String, Totals> = HashMap::new();
        let mut total = Totals::default();
        let sums = self.sums();
        let since = (since - since % HOUR).max(sums.first_hour);
        for ((hour, key), totals) in sums.hours.range((since, Key::first())..) {
            groups.entry(key.group(by, *hour)).or_default().add(totals);
            total.add(totals);
        }
        drop(sums);
        let mut rows: Vec<UsageRow> = groups
            .into_iter()
            .map(|(key, totals)| UsageRow { key, totals })
            .collect();
        match by {
            Grouping::Day => rows.sort_by(|a, b| a.key.cmp(&b.key)),
            _ => rows.sort_by(|a, b| {
                (b.totals.cost, b.totals.usage.total_tokens(), &a.key).cmp(&(
                    a.totals.cost,
                    a.totals.usage.total_tokens(),
                    &b.key,
                ))
            }),
        }
        UsageReport {
            since,
            by,
            rows,
            total,
        }
    }
}

impl Key {
    /// The smallest key: with `(hour, Key::first())` a range starts at the hour's first.
    fn first() -> Self {
        let empty: Arc<str> = Arc::from("");
        Self {
            person: Arc::clone(&empty),
            channel: Arc::clone(&empty),
            provider: Arc::clone(&empty),
            model: empty,
        }
    }
}
