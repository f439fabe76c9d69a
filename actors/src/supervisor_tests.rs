//! Tests of the restart budget of the [`crate::supervisor::NodeSupervisor`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::supervisor::{
    ChildSpec, NodeSupervisor, NodeSupervisorArgs, NodeSupervisorMsg, RestartBudget,
};

/// A child that fails on any message.
struct Fragile;

impl Actor for Fragile {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        Err("boom".into())
    }
}

fn fragile_spec(
    starts: &Arc<AtomicUsize>,
    latest: &Arc<std::sync::Mutex<Option<ActorRef<()>>>>,
) -> ChildSpec {
    let starts = Arc::clone(starts);
    let latest = Arc::clone(latest);
    ChildSpec {
        name: "fragile".into(),
        start: Arc::new(move |supervisor| {
            let starts = Arc::clone(&starts);
            let latest = Arc::clone(&latest);
            Box::pin(async move {
                starts.fetch_add(1, Ordering::SeqCst);
                let (actor, _) = Actor::spawn_linked(None, Fragile, (), supervisor).await?;
                *latest.lock().unwrap() = Some(actor.clone());
                Ok(actor.get_cell())
            })
        }),
    }
}

async fn wait_for_starts(starts: &AtomicUsize, expected: usize) {
    for _ in 0..500 {
        if starts.load(Ordering::SeqCst) >= expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("child was not restarted");
}

#[tokio::test]
async fn restarts_a_failed_child_and_counts_it() {
    let starts = Arc::new(AtomicUsize::new(0));
    let latest = Arc::default();
    let args = NodeSupervisorArgs {
        children: vec![fragile_spec(&starts, &latest)],
        budget: RestartBudget {
            max_restarts: 3,
            window: Duration::from_secs(60),
        },
    };
    let (supervisor, _) = Actor::spawn(None, NodeSupervisor, args).await.unwrap();
    latest.lock().unwrap().clone().unwrap().cast(()).unwrap();
    wait_for_starts(&starts, 2).await;
    let counts = ractor::call_t!(
        supervisor,
        |reply| NodeSupervisorMsg::RestartCounts { reply },
        1000
    )
    .unwrap();
    assert_eq!(counts["fragile"], 1);
}

#[tokio::test]
async fn gives_up_when_the_budget_is_spent() {
    let starts = Arc::new(AtomicUsize::new(0));
    let latest = Arc::default();
    let args = NodeSupervisorArgs {
        children: vec![fragile_spec(&starts, &latest)],
        budget: RestartBudget {
            max_restarts: 2,
            window: Duration::from_secs(60),
        },
    };
    let (_supervisor, join) = Actor::spawn(None, NodeSupervisor, args).await.unwrap();
    for expected_starts in 2..=3 {
        latest.lock().unwrap().clone().unwrap().cast(()).unwrap();
        wait_for_starts(&starts, expected_starts).await;
    }
    latest.lock().unwrap().clone().unwrap().cast(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .expect("supervisor stopped")
        .unwrap();
}
