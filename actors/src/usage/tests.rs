//! The usage book, prices, budgets and the local ledger.

use std::sync::Arc;

use super::*;
use crate::provider::Usage;

const DAY: u64 = 86_400;
/// The start of yesterday (UTC): records of the last days, as the book holds them.
fn yesterday() -> u64 {
    let now = crate::message::unix_now();
    now - now % DAY - DAY
}

fn day_name(at: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(at).unwrap())
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string()
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

fn price(model: &str, provider: Option<&str>, input: f64, output: f64) -> Price {
    Price {
        model: model.into(),
        provider: provider.map(str::to_owned),
        input,
        output,
        cache_read: None,
        cache_write: None,
    }
}

/// One model call of provider `main` in a turn.
fn record(at: u64, person: &str, channel: &str, model: &str, used: Usage) -> Spent {
    Spent {
        at,
        person: person.into(),
        channel: channel.into(),
        by: crate::model_worker::ServedBy {
            provider: "main".into(),
            model: model.into(),
        },
        calls: 1,
        usage: used,
    }
}

async fn book_over(
    ledger: &Arc<LocalUsageLedger>,
    prices: Vec<Price>,
    budgets: Budgets,
) -> UsageBook {
    let ledger: Arc<dyn UsageLedger> = ledger.clone();
    UsageBook::open(ledger, PriceTable::new(prices).unwrap(), budgets)
        .await
        .unwrap()
}

async fn book(dir: &std::path::Path, prices: Vec<Price>, budgets: Budgets) -> UsageBook {
    let ledger = Arc::new(LocalUsageLedger::open(dir).unwrap());
    book_over(&ledger, prices, budgets).await
}

#[test]
fn a_price_counts_cached_prompt_tokens_at_their_own_rates() {
    let table = PriceTable::new(vec![Price {
        cache_read: Some(0.3),
        cache_write: Some(3.75),
        ..price("claude", None, 3.0, 15.0)
    }])
    .unwrap();
    let used = Usage {
        input_tokens: 1_000_000 + 2_000_000 + 100_000,
        output_tokens: 10_000,
        cache_read_tokens: 2_000_000,
        cache_write_tokens: 100_000,
    };
    let cost = table.cost("any", "claude", &used).unwrap();
    // 1M uncached at 3, 2M read at 0.3, 0.1M written at 3.75, 10k out at 15.
    assert_eq!(cost, Cost::from_units(3.0 + 0.6 + 0.375 + 0.15));
    assert_eq!(table.cost("any", "gpt", &used), None);
}

#[test]
fn a_providers_own_price_wins_over_the_models_price() {
    let table = PriceTable::new(vec![
        price("llama", None, 1.0, 1.0),
        price("llama", Some("cheap"), 0.1, 0.1),
    ])
    .unwrap();
    let used = usage(1_000_000, 0);
    assert_eq!(
        table.cost("cheap", "llama", &used),
        Some(Cost::from_units(0.1))
    );
    assert_eq!(
        table.cost("other", "llama", &used),
        Some(Cost::from_units(1.0))
    );
}

#[test]
fn prices_that_are_not_prices_are_refused_by_key() {
    let negative = PriceTable::new(vec![
        price("a", None, 1.0, 1.0),
        price("b", None, -1.0, 1.0),
    ]);
    let negative = negative.unwrap_err();
    assert_eq!(
        format!("{}: {negative}", negative.key()),
        "prices[1].input: -1 is not a price (a finite amount, 0 or more)"
    );
    let twice = PriceTable::new(vec![price("a", None, 1.0, 1.0), price("a", None, 2.0, 1.0)]);
    assert!(matches!(twice, Err(PriceError::Twice { index: 1, .. })));
    let nan = PriceTable::new(vec![Price {
        cache_read: Some(f64::NAN),
        ..price("a", None, 1.0, 1.0)
    }]);
    assert!(matches!(
        nan,
        Err(PriceError::Amount {
            key: "cache_read",
            ..
        })
    ));
    assert!(matches!(
        PriceTable::new(vec![price(" ", None, 1.0, 1.0)]),
        Err(PriceError::EmptyModel { index: 0 })
    ));
}

#[test]
fn costs_add_up_exactly_and_read_as_units() {
    let mut sum = Cost::ZERO;
    for _ in 0..1000 {
        sum += Cost::of_tokens(7, 0.15);
    }
    assert_eq!(sum, Cost::of_tokens(7000, 0.15));
    assert_eq!(serde_json::to_value(Cost::from_units(1.5)).unwrap(), 1.5);
    assert_eq!(Cost::from_units(-3.0), Cost::ZERO);
    assert_eq!(Cost::from_units(f64::NAN), Cost::ZERO);
}

#[tokio::test]
async fn reports_group_usage_since_an_hour_and_survive_a_restart() {
    let start = yesterday();
    let dir = tempfile::tempdir().unwrap();
    let prices = || {
        vec![
            price("big", None, 10.0, 30.0),
            price("small", None, 1.0, 2.0),
        ]
    };
    let ledger = Arc::new(LocalUsageLedger::open(dir.path()).unwrap());
    let first = book_over(&ledger, prices(), Budgets::default()).await;
    let records = [
        record(start - DAY, "person:ann", "web", "big", usage(100, 100)),
        record(start + 10, "person:ann", "web", "big", usage(1000, 500)),
        record(
            start + 20,
            "person:ann",
            "telegram",
            "small",
            usage(300, 30),
        ),
        record(start + 3600, "slack:U1", "slack", "small", usage(50, 5)),
        record(start + 3700, "slack:U1", "slack", "unknown", usage(7, 3)),
    ];
    for record in records {
        first.record(vec![first.price(record)]);
    }
    assert_eq!(
        first.report(Grouping::Person, 0).total.turns,
        5,
        "counted at once"
    );
    // Kept in the background: wait (bounded) until the ledger holds all five.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while ledger.since(0).await.unwrap().len() < 5 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the ledger keeps every record");
    drop(first);
    // A new book (as after a restart) reads what the ledger kept.
    let book = book_over(&ledger, prices(), Budgets::default()).await;

    let by_person = book.report(Grouping::Person, start + 5);
    assert_eq!(by_person.since, start);
    let rows: Vec<(&str, u64, u64)> = by_person
        .rows
        .iter()
        .map(|row| {
            (
                row.key.as_str(),
                row.totals.turns,
                row.totals.usage.total_tokens(),
            )
        })
        .collect();
    assert_eq!(rows, [("person:ann", 2, 1830), ("slack:U1", 2, 65)]);
    let ann = &by_person.rows[0].totals;
    let expected = Cost::of_tokens(1000, 10.0)
        + Cost::of_tokens(500, 30.0)
        + Cost::of_tokens(300, 1.0)
        + Cost::of_tokens(30, 2.0);
    assert_eq!(ann.cost, expected);
    assert_eq!(by_person.rows[1].totals.unpriced, 1);
    assert_eq!(by_person.total.turns, 4);

    let by_model = book.report(Grouping::Model, 0);
    assert_eq!(by_model.total.turns, 5);
    assert_eq!(by_model.rows[0].key, "big");
    let by_day = book.report(Grouping::Day, 0);
    let days: Vec<&str> = by_day.rows.iter().map(|row| row.key.as_str()).collect();
    assert_eq!(days, [day_name(start - DAY), day_name(start)]);
    let later = book.report(Grouping::Channel, start + 3600);
    let channels: Vec<&str> = later.rows.iter().map(|row| row.key.as_str()).collect();
    assert_eq!(channels, ["slack"]);
}

#[tokio::test]
async fn a_spent_budget_refuses_until_the_next_utc_day() {
    let start = yesterday();
    let dir = tempfile::tempdir().unwrap();
    let ann = Budget {
        tokens_per_day: Some(1000),
        cost_per_day: None,
    };
    let everyone = Budget {
        tokens_per_day: None,
        cost_per_day: Some(Cost::from_units(1.0)),
    };
    let budgets = Budgets::new(everyone, vec![("person:ann".into(), ann)]).unwrap();
    let book = book(dir.path(), vec![price("m", None, 100.0, 100.0)], budgets).await;
    let now = start + 100;
    assert_eq!(book.admit("person:ann", now), Ok(()));
    book.record(vec![book.price(record(
        now,
        "person:ann",
        "web",
        "m",
        usage(900, 99),
    ))]);
    assert_eq!(book.admit("person:ann", now), Ok(()), "999 of 1000");
    book.record(vec![book.price(record(
        now,
        "person:ann",
        "web",
        "m",
        usage(1, 0),
    ))]);
    let refused = book.admit("person:ann", now).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "person:ann has used today's budget: 1000 of 1000 tokens (it renews at 00:00 UTC)"
    );
    // Bob has no budget of his own, but everyone's is near: 0.1 units spent so far.
    assert_eq!(book.admit("person:bob", now), Ok(()));
    book.record(vec![book.price(record(
        now,
        "person:bob",
        "web",
        "m",
        usage(9000, 0),
    ))]);
    let everyone = book.admit("person:bob", now).unwrap_err();
    assert_eq!(
        everyone.to_string(),
        "today's budget for everyone is used: 1.00 of 1.00 (it renews at 00:00 UTC)"
    );
    // Yesterday's spending does not count tomorrow.
    assert_eq!(book.admit("person:ann", start + DAY), Ok(()));
}

#[test]
fn budgets_that_name_a_person_twice_or_nobody_are_refused() {
    let budget = Budget::default();
    let twice = Budgets::new(
        budget,
        vec![("person:a".into(), budget), ("person:a".into(), budget)],
    );
    assert!(matches!(twice, Err(BudgetError::Twice { index: 1, .. })));
    let nobody = Budgets::new(budget, vec![(String::new(), budget)]);
    assert_eq!(nobody.unwrap_err().key(), "budgets.people[0].person");
    assert!(matches!(
        cost_limit("budgets.cost_per_day", Some(-1.0)),
        Err(BudgetError::Cost { .. })
    ));
}

#[tokio::test]
async fn the_book_lets_go_of_hours_past_what_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let book = book(dir.path(), Vec::new(), Budgets::default()).await;
    let now = crate::message::unix_now();
    let old = now - (KEPT_DAYS + 3) * DAY;
    book.record(vec![book.price(record(
        old,
        "person:ann",
        "web",
        "m",
        usage(10, 10),
    ))]);
    book.record(vec![book.price(record(
        now,
        "person:ann",
        "web",
        "m",
        usage(1, 1),
    ))]);
    let report = book.report(Grouping::Person, 0);
    assert_eq!(report.total.turns, 1, "only the recent turn is held");
    assert!(
        report.since >= now - KEPT_DAYS * DAY - 3600,
        "{}",
        report.since
    );
    // A record older than what is held is not counted again.
    book.record(vec![book.price(record(
        old,
        "person:ann",
        "web",
        "m",
        usage(10, 10),
    ))]);
    assert_eq!(book.report(Grouping::Person, 0).total.turns, 1);
}
