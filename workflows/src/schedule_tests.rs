use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::definition::WorkflowDefinition;
use crate::engine::RunLimits;
use crate::journal::WorkflowStore;
use crate::runs::EngineParts;
use crate::testing::{MemoryWorkflowStore, RecordingEffects};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn trigger(text: &str) -> Trigger {
    let definition = WorkflowDefinition::from_toml(&format!(
        "name = \"w\"\nowner = \"person:ada\"\n[[triggers]]\n{text}\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
    ))
    .unwrap();
    Workflow::compile(definition).unwrap().triggers()[0].clone()
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[test]
fn a_new_schedule_starts_from_now() {
    let every = trigger("every = \"10m\"");
    let decision = decide(&every, None, 5 * HOUR);
    assert_eq!(
        decision,
        Decision {
            fire: None,
            missed: vec![],
            last_due: Some(5 * HOUR)
        }
    );
}

#[test]
fn a_firing_missed_within_the_catch_up_window_runs_once() {
    let daily = trigger("cron = \"0 7 * * *\"");
    let last = ms("2026-12-06T07:00:00Z");
    let decision = decide(&daily, Some(last), ms("2026-12-07T07:40:00Z"));
    assert_eq!(decision.fire, Some(ms("2026-12-07T07:00:00Z")));
    assert!(decision.missed.is_empty());
}

#[test]
fn a_firing_missed_beyond_the_window_is_recorded_and_not_run() {
    let daily = trigger("cron = \"0 7 * * *\"");
    let last = ms("2026-12-05T07:00:00Z");
    let decision = decide(&daily, Some(last), ms("2026-12-07T09:00:00Z"));
    assert_eq!(decision.fire, None);
    assert_eq!(
        decision.missed,
        vec![ms("2026-12-06T07:00:00Z"), ms("2026-12-07T07:00:00Z")]
    );
    assert_eq!(decision.last_due, Some(ms("2026-12-07T07:00:00Z")));
}

#[test]
fn only_the_latest_missed_firing_runs_and_the_older_are_recorded() {
    let often = trigger("every = \"10m\"\ncatch_up = \"1h\"");
    let decision = decide(&often, Some(0), 35 * MINUTE);
    assert_eq!(decision.fire, Some(30 * MINUTE));
    assert_eq!(decision.missed, vec![10 * MINUTE, 20 * MINUTE]);
}

#[test]
fn a_one_off_time_fires_once() {
    let once = trigger("at = \"2026-12-24T18:00:00+01:00\"");
    let due = ms("2026-12-24T17:00:00Z");
    assert_eq!(decide(&once, None, due - 1).fire, None);
    let decision = decide(&once, None, due + 1);
    assert_eq!(decision.fire, Some(due));
    assert_eq!(decide(&once, decision.last_due, due + HOUR).fire, None);
}

async fn scheduled(
    definition: &str,
    store: Arc<MemoryWorkflowStore>,
    clock: Clock,
) -> (
    Workflows,
    tokio_util::sync::CancellationToken,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::load(dir.path()).unwrap());
    catalog
        .put(WorkflowDefinition::from_toml(definition).unwrap())
        .await
        .unwrap();
    let workflows = Workflows::new(EngineParts {
        catalog,
        store: store as Arc<dyn WorkflowStore>,
        effects: RecordingEffects::new(),
        replies: Default::default(),
        clock,
        limits: RunLimits::default(),
        journal_limit: crate::journal::DEFAULT_JOURNAL_LIMIT,
        router: None,
    });
    workflows.spawn().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(run_scheduler(workflows.clone(), stop.clone()));
    (workflows, stop, dir)
}

const BERLIN: &str = r#"
name = "night"
owner = "person:ada"
[[triggers]]
cron = "30 2 * * *"
timezone = "Europe/Berlin"
[[steps]]
id = "a"
wait = "1s"
"#;

#[tokio::test(start_paused = true)]
async fn a_half_past_two_job_fires_once_on_the_spring_forward_day_right_after_the_gap() {
    let store: Arc<MemoryWorkflowStore> = Arc::default();
    let clock = Clock::starting_at(ms("2026-03-28T12:00:00Z"));
    let (workflows, stop, _dir) = scheduled(BERLIN, store, clock).await;
    tokio::time::sleep(Duration::from_secs(2 * 86_400)).await;
    let mut due: Vec<i64> = workflows
        .runs(Some("night"))
        .await
        .unwrap()
        .into_iter()
        .map(|summary| match summary.cause {
            crate::journal::Cause::Schedule { due_ms, .. } => due_ms,
            other => panic!("not scheduled: {other:?}"),
        })
        .collect();
    due.sort_unstable();
    assert_eq!(
        due,
        vec![ms("2026-03-29T01:00:00Z"), ms("2026-03-30T00:30:00Z")],
        "03:00 CEST on the 29th (02:30 does not exist), then 02:30 CEST"
    );
    stop.cancel();
}

const HOURLY: &str = r#"
name = "hourly"
owner = "person:ada"
[[triggers]]
cron = "0 * * * *"
[[steps]]
id = "a"
wait = "1s"
"#;

#[tokio::test(start_paused = true)]
async fn a_schedule_across_downtime_runs_once_within_the_window_and_records_a_miss_beyond_it() {
    let store: Arc<MemoryWorkflowStore> = Arc::default();
    let start = ms("2026-12-07T10:30:00Z");
    // Up from 10:30 to 11:10: the 11:00 firing runs.
    let (workflows, stop, _dir) =
        scheduled(HOURLY, Arc::clone(&store), Clock::starting_at(start)).await;
    tokio::time::sleep(Duration::from_secs(40 * 60)).await;
    stop.cancel();
    assert_eq!(workflows.runs(None).await.unwrap().len(), 1);
    drop(workflows);

    // Down across 12:00; back at 12:20 (inside the 1 h window): 12:00 runs once.
    let (workflows, stop, _dir) = scheduled(
        HOURLY,
        Arc::clone(&store),
        Clock::starting_at(ms("2026-12-07T12:20:00Z")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop.cancel();
    let runs = workflows.runs(None).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .any(|run| run.run == firing_run_id("hourly", 0, ms("2026-12-07T12:00:00Z")))
    );
    drop(workflows);

    // Down across 13:00 to 16:00; back at 16:30: 16:00 runs, 13:00–15:00 are missed.
    let (workflows, stop, _dir) = scheduled(
        HOURLY,
        Arc::clone(&store),
        Clock::starting_at(ms("2026-12-07T16:30:00Z")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop.cancel();
    assert_eq!(workflows.runs(None).await.unwrap().len(), 3);
    let state = store.schedule(&schedule_key("hourly", 0)).await.unwrap();
    let missed: Vec<i64> = state.missed.iter().map(|firing| firing.due_ms).collect();
    assert_eq!(
        missed,
        vec![
            ms("2026-12-07T13:00:00Z"),
            ms("2026-12-07T14:00:00Z"),
            ms("2026-12-07T15:00:00Z")
        ]
    );
    let reports = report(&workflows, &workflows.catalog().get("hourly").unwrap()).await;
    assert_eq!(reports[0].missed.len(), 3);
    assert_eq!(reports[0].next_due_ms, Some(ms("2026-12-07T17:00:00Z")));
}
