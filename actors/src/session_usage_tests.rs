//! Token accounting in a session's turns: every model call's usage is summed per turn and
//! priced; the runaway guard stops a turn that keeps calling tools past its tokens; a
//! spent budget refuses the next turn without asking the model.

use std::sync::Arc;
use std::time::Duration;

use crate::message::{ContentType, InboundMessage, MessageParts};
use crate::model_worker::ProviderPolicy;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::provider::Usage;
use crate::session::SessionConfig;
use crate::snapshot::MemorySnapshotStore;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{ErrorCode, TurnEvent};
use crate::usage::{
    Budget, Budgets, Cost, Grouping, LocalUsageLedger, Price, PriceTable, UsageBook,
};

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

fn costing(input: u64, output: u64, answer: Scripted) -> Scripted {
    Scripted::Costing(usage(input, output), Box::new(answer))
}

/// A round of tools the node does not have: refused, and the model is asked again.
fn tool_round() -> Scripted {
    Scripted::Tools(vec![("c".into(), "nobody__nothing".into(), "{}".into())])
}

async fn book(dir: &std::path::Path, budgets: Budgets) -> Arc<UsageBook> {
    let ledger = Arc::new(LocalUsageLedger::open(dir).unwrap());
    let prices = PriceTable::new(vec![Price {
        model: "script".into(),
        provider: None,
        input: 2.0,
        output: 10.0,
        cache_read: None,
        cache_write: None,
    }])
    .unwrap();
    Arc::new(UsageBook::open(ledger, prices, budgets).await.unwrap())
}

async fn node(provider: &Arc<ScriptedProvider>, usage: &Arc<UsageBook>) -> NodeHandle {
    let setup = NodeSetup {
        session: SessionConfig {
            system_prompt: "".into(),
            history_window: 20,
            idle_passivate: Duration::from_secs(600),
            provider: "main".into(),
            turn_timeout: Duration::from_secs(30),
            tools: crate::skill::ToolPolicy::default(),
        },
        store: Arc::new(MemorySnapshotStore::new()),
        providers: vec![ProviderSetup {
            provider: Arc::clone(provider) as _,
            policy: ProviderPolicy::default(),
        }],
        skills: Vec::new(),
        budget: crate::supervisor::RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: None,
        usage: Some(Arc::clone(usage)),
    };
    start_node(setup, |_| Vec::new()).await.unwrap().0
}

fn message(id: &str, sender: &str) -> InboundMessage {
    InboundMessage::new(MessageParts {
        id: id.into(),
        platform: "test".into(),
        sender_id: sender.into(),
        conversation_id: sender.into(),
        content_type: ContentType::Text,
        payload: "hello".into(),
        timestamp: 1,
        reply_to: None,
        attachments: Vec::new(),
        metadata: Default::default(),
    })
    .expect("a valid message")
}

/// The turn's last event: its reply or its failure.
async fn turn(node: &NodeHandle, message: InboundMessage) -> TurnEvent {
    let mut events = node.route(message).unwrap();
    while let Some(event) = events.recv().await {
        if matches!(event, TurnEvent::Reply { .. } | TurnEvent::Failed { .. }) {
            return event;
        }
    }
    panic!("the turn ended without a reply");
}

fn failure(event: TurnEvent) -> crate::turn::TurnError {
    match event {
        TurnEvent::Failed { error, .. } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_turn_counts_every_model_call_and_its_cost() {
    let dir = tempfile::tempdir().unwrap();
    let book = book(dir.path(), Budgets::default()).await;
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        [
            costing(1000, 100, tool_round()),
            costing(1500, 200, Scripted::Text(vec!["done".into()])),
            // A model that reports nothing is not counted.
            Scripted::Text(vec!["quiet".into()]),
        ],
    ));
    let node = node(&provider, &book).await;
    assert!(matches!(
        turn(&node, message("m1", "ada")).await,
        TurnEvent::Reply { .. }
    ));
    assert!(matches!(
        turn(&node, message("m2", "ada")).await,
        TurnEvent::Reply { .. }
    ));

    let report = book.report(Grouping::Person, 0);
    assert_eq!(report.rows.len(), 1);
    let ada = &report.rows[0];
    assert_eq!(ada.key, "test:ada");
    assert_eq!((ada.totals.turns, ada.totals.calls), (1, 2));
    assert_eq!(ada.totals.usage, usage(2500, 300));
    assert_eq!(
        ada.totals.cost,
        Cost::of_tokens(2500, 2.0) + Cost::of_tokens(300, 10.0)
    );
    let by_model = book.report(Grouping::Provider, 0);
    assert_eq!(by_model.rows[0].key, "main");
}

#[tokio::test]
async fn a_turn_past_its_tokens_is_stopped_and_what_it_spent_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let budgets = Budgets::default().with_max_tokens_per_turn(Some(2000));
    let book = book(dir.path(), budgets).await;
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        [
            costing(900, 50, tool_round()),
            costing(1000, 60, tool_round()),
            costing(1100, 70, tool_round()),
        ],
    ));
    let node = node(&provider, &book).await;
    let error = failure(turn(&node, message("m1", "ada")).await);
    assert_eq!(error.code, ErrorCode::TurnTokenLimit);
    assert!(error.message.contains("2010 tokens"), "{}", error.message);
    // Stopped before the third call.
    assert_eq!(provider.requests().len(), 2);
    let spent = book.report(Grouping::Person, 0).total;
    assert_eq!((spent.turns, spent.usage.total_tokens()), (1, 2010));
}

#[tokio::test]
async fn a_spent_budget_refuses_the_next_turn_without_asking_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let ada = Budget {
        tokens_per_day: Some(500),
        cost_per_day: None,
    };
    let budgets = Budgets::new(Budget::default(), vec![("test:ada".into(), ada)]).unwrap();
    let book = book(dir.path(), budgets).await;
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        [
            costing(400, 100, Scripted::Text(vec!["one".into()])),
            costing(10, 10, Scripted::Text(vec!["for bob".into()])),
        ],
    ));
    let node = node(&provider, &book).await;
    assert!(matches!(
        turn(&node, message("m1", "ada")).await,
        TurnEvent::Reply { .. }
    ));
    let error = failure(turn(&node, message("m2", "ada")).await);
    assert_eq!(error.code, ErrorCode::BudgetExceeded);
    assert_eq!(
        error.message,
        "test:ada has used today's budget: 500 of 500 tokens (it renews at 00:00 UTC)"
    );
    assert_eq!(provider.requests().len(), 1);
    // Someone else is not held back by Ada's budget.
    assert!(matches!(
        turn(&node, message("m3", "bob")).await,
        TurnEvent::Reply { .. }
    ));
}
