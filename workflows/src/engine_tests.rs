use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Map, Value, json};

use super::*;
use crate::catalog::Catalog;
use crate::definition::WorkflowDefinition;
use crate::journal::{Cause, RunStatus, RunSummary, WorkflowStore};
use crate::runs::{EngineParts, StartRun, Workflows};
use crate::testing::{MemoryWorkflowStore, RecordingEffects, ToolScript};

struct Harness {
    workflows: Workflows,
    effects: Arc<RecordingEffects>,
    store: Arc<MemoryWorkflowStore>,
    _dir: tempfile::TempDir,
}

async fn harness_with(
    definitions: &[&str],
    store: Arc<MemoryWorkflowStore>,
    effects: Arc<RecordingEffects>,
    limits: RunLimits,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::load(dir.path()).unwrap());
    for text in definitions {
        catalog
            .put(WorkflowDefinition::from_toml(text).unwrap())
            .await
            .unwrap();
    }
    let workflows = Workflows::new(EngineParts {
        catalog,
        store: Arc::clone(&store) as Arc<dyn WorkflowStore>,
        effects: Arc::clone(&effects) as Arc<dyn crate::effects::Effects>,
        replies: Default::default(),
        clock: Clock::starting_at(1_800_000_000_000),
        limits,
        journal_limit: crate::journal::DEFAULT_JOURNAL_LIMIT,
        router: None,
    });
    workflows.spawn().await.unwrap();
    Harness {
        workflows,
        effects,
        store,
        _dir: dir,
    }
}

async fn harness(definitions: &[&str]) -> Harness {
    harness_with(
        definitions,
        Arc::default(),
        RecordingEffects::new(),
        RunLimits::default(),
    )
    .await
}

async fn start(harness: &Harness, workflow: &str, input: Value) -> String {
    let Value::Object(input) = input else {
        panic!("input is a table")
    };
    harness
        .workflows
        .start(StartRun {
            workflow: workflow.into(),
            input,
            cause: Cause::Manual { by: "test".into() },
            run: None,
        })
        .await
        .unwrap()
        .run
}

/// Waits (on paused time) until the run ends; panics after a simulated day.
async fn ended(workflows: &Workflows, run: &str) -> (RunSummary, Vec<Record>) {
    for _ in 0..86_400 {
        if let Ok((summary, records)) = workflows.run(run).await
            && summary.status.is_over()
        {
            return (summary, records);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the run {run} never ended");
}

fn output(records: &[Record]) -> Value {
    match records.last() {
        Some(Record::Finished { output, .. }) => output.clone(),
        other => panic!("the run did not finish: {other:?}"),
    }
}

const FAN_OUT: &str = r#"
name = "fan"
owner = "person:ada"
[[steps]]
id = "fetch"
[[steps.branches]]
steps = [{ id = "b0", tool = "t.b0" }]
[[steps.branches]]
steps = [{ id = "b1", tool = "t.b1" }]
[[steps.branches]]
steps = [{ id = "b2", tool = "t.b2" }]
[[steps.branches]]
steps = [{ id = "b3", tool = "t.b3" }]
[[steps.branches]]
steps = [{ id = "b4", tool = "t.b4" }]
[[steps]]
id = "join"
model = "{{ steps.fetch.output }}"
"#;

#[tokio::test(start_paused = true)]
async fn five_branches_with_random_delays_join_in_branch_order() {
    let harness = harness(&[FAN_OUT]).await;
    let mut random = rand::rng();
    for branch in 0..5 {
        harness.effects.script(
            &format!("t.b{branch}"),
            ToolScript::Answer {
                value: json!(branch),
                delay: Duration::from_millis(random.random_range(1..2_000)),
            },
        );
    }
    let run = start(&harness, "fan", json!({})).await;
    let (summary, records) = ended(&harness.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(output(&records), json!("summary of: [0,1,2,3,4]"));
    assert_eq!(
        harness.effects.calls().len(),
        6,
        "five tools and one model turn"
    );
}

#[tokio::test(start_paused = true)]
async fn a_join_of_the_first_two_takes_the_fastest_and_cancels_the_rest() {
    let definition = FAN_OUT.replace("id = \"fetch\"\n", "id = \"fetch\"\nfirst = 2\n");
    let harness = harness(&[definition.as_str()]).await;
    for (branch, millis) in [(0, 900), (1, 50), (2, 700), (3, 10), (4, 800)] {
        harness.effects.script(
            &format!("t.b{branch}"),
            ToolScript::Answer {
                value: json!(branch),
                delay: Duration::from_millis(millis),
            },
        );
    }
    let run = start(&harness, "fan", json!({})).await;
    let (_, records) = ended(&harness.workflows, &run).await;
    assert_eq!(output(&records), json!("summary of: [1,3]"));
}

const TWO_TOOLS: &str = r#"
name = "two"
owner = "person:ada"
[[steps]]
id = "a"
tool = "t.a"
arguments = { city = "{{ input.city }}" }
[[steps]]
id = "b"
tool = "t.b"
arguments = { from_a = "{{ steps.a.output.arguments.city }}" }
[[steps]]
id = "tell"
send = "done: {{ steps.b.output.arguments.from_a }}"
to = "telegram:42"
"#;

#[tokio::test(start_paused = true)]
async fn outputs_feed_later_steps_through_templates() {
    let harness = harness(&[TWO_TOOLS]).await;
    let run = start(&harness, "two", json!({"city": "Lyon"})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(
        harness.effects.sent(),
        vec![("telegram:42".to_owned(), "done: Lyon".to_owned())]
    );
    assert_eq!(
        harness.effects.calls(),
        vec![
            format!("{run}:a:1"),
            format!("{run}:b:1"),
            format!("{run}:tell:1")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_taken_up_again_never_repeats_a_finished_step_and_reuses_the_open_attempts_key() {
    let store: Arc<MemoryWorkflowStore> = Arc::default();
    let held = RunLimits {
        hold: vec![HoldPoint("after:b".into())],
        ..RunLimits::default()
    };
    let first = harness_with(
        &[TWO_TOOLS],
        Arc::clone(&store),
        RecordingEffects::new(),
        held.clone(),
    )
    .await;
    let run = start(&first, "two", json!({"city": "Lyon"})).await;
    // The node "dies" once b's effect ran but before its result was journaled.
    for _ in 0..100 {
        if first.effects.calls().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        first.effects.calls(),
        vec![format!("{run}:a:1"), format!("{run}:b:1")]
    );
    drop(first);

    // Taken up with the same hold point, the run goes on past it: it was held there once.
    let second = harness_with(&[TWO_TOOLS], store, RecordingEffects::new(), held).await;
    let (summary, records) = ended(&second.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Finished);
    assert_eq!(
        second.effects.calls(),
        vec![format!("{run}:b:1"), format!("{run}:tell:1")],
        "a is replayed from the journal; b runs again under the same key"
    );
    let started_a = records
        .iter()
        .filter(|record| matches!(record, Record::StepStarted { step, .. } if step == "a"))
        .count();
    assert_eq!(started_a, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_is_retried_with_backoff_under_a_new_attempt_key() {
    let harness = harness(&[TWO_TOOLS]).await;
    harness.effects.script(
        "t.a",
        ToolScript::FailFirst {
            failures: 2,
            value: json!({"arguments": {"city": "Oslo"}}),
        },
    );
    let run = start(&harness, "two", json!({"city": "Lyon"})).await;
    let (summary, records) = ended(&harness.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Finished);
    let calls = harness.effects.calls();
    assert_eq!(
        &calls[..3],
        [
            format!("{run}:a:1"),
            format!("{run}:a:2"),
            format!("{run}:a:3")
        ]
    );
    let waits: Vec<i64> = records
        .iter()
        .filter_map(|record| match record {
            Record::StepFailed {
                at,
                retry_at: Some(retry),
                ..
            } => Some(retry - at),
            _ => None,
        })
        .collect();
    assert_eq!(waits, vec![1_000, 2_000], "the backoff doubles");
}

#[tokio::test(start_paused = true)]
async fn a_step_that_keeps_failing_fails_the_run_after_its_retries() {
    let definition = TWO_TOOLS.replace("tool = \"t.a\"\n", "tool = \"t.a\"\nretries = 1\n");
    let harness = harness(&[definition.as_str()]).await;
    harness.effects.script(
        "t.a",
        ToolScript::FailFirst {
            failures: 10,
            value: json!(null),
        },
    );
    let run = start(&harness, "two", json!({"city": "Lyon"})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(harness.effects.calls().len(), 2);
    assert_eq!(
        summary.error.unwrap().code,
        crate::effects::StepErrorCode::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_past_its_timeout_is_tried_again_then_fails() {
    let definition = TWO_TOOLS.replace(
        "tool = \"t.a\"\n",
        "tool = \"t.a\"\ntimeout = \"1s\"\nretries = 1\n",
    );
    let harness = harness(&[definition.as_str()]).await;
    harness.effects.script(
        "t.a",
        ToolScript::Answer {
            value: json!(1),
            delay: Duration::from_secs(5),
        },
    );
    let run = start(&harness, "two", json!({"city": "Lyon"})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(
        summary.error.unwrap().code,
        crate::effects::StepErrorCode::Timeout
    );
    assert_eq!(harness.effects.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_missing_template_value_fails_at_once_with_its_name() {
    let definition = TWO_TOOLS.replace("{{ input.city }}", "{{ input.town }}");
    let harness = harness(&[definition.as_str()]).await;
    let run = start(&harness, "two", json!({})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    let error = summary.error.unwrap();
    assert_eq!(error.code, crate::effects::StepErrorCode::Invalid);
    assert!(error.message.contains("input.town"), "{}", error.message);
    assert!(harness.effects.calls().is_empty());
}

const WAITING: &str = r#"
name = "waiting"
owner = "person:ada"
deadline = "1h"
[[steps]]
id = "nap"
wait = "{{NAP}}"
[[steps]]
id = "after"
tool = "t.after"
"#;

#[tokio::test(start_paused = true)]
async fn a_run_past_its_deadline_fails_with_deadline_exceeded() {
    let harness = harness(&[WAITING.replace("{{NAP}}", "2h").as_str()]).await;
    let run = start(&harness, "waiting", json!({})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(
        summary.error.unwrap().code,
        crate::effects::StepErrorCode::DeadlineExceeded
    );
    assert!(harness.effects.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wait_taken_up_after_a_restart_ends_at_its_first_due_time() {
    let store: Arc<MemoryWorkflowStore> = Arc::default();
    let definition = WAITING.replace("{{NAP}}", "10m");
    let first = harness_with(
        &[definition.as_str()],
        Arc::clone(&store),
        RecordingEffects::new(),
        RunLimits::default(),
    )
    .await;
    let run = start(&first, "waiting", json!({})).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(first);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let second = harness_with(
        &[definition.as_str()],
        store,
        RecordingEffects::new(),
        RunLimits::default(),
    )
    .await;
    let (_, records) = ended(&second.workflows, &run).await;
    let due = records.iter().find_map(|record| match record {
        Record::StepStarted { step, due, .. } if step == "nap" => *due,
        _ => None,
    });
    let finished = records.iter().find_map(|record| match record {
        Record::StepFinished { step, at, .. } if step == "nap" => Some(*at),
        _ => None,
    });
    let (due, finished) = (due.unwrap(), finished.unwrap());
    assert!(
        (finished - due).abs() < 2_000,
        "due {due}, finished {finished}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_paused_run_waits_and_a_cancelled_one_stops() {
    let harness = harness(&[WAITING.replace("{{NAP}}", "1s").as_str()]).await;
    let run = start(&harness, "waiting", json!({})).await;
    let paused = harness
        .workflows
        .control(&run, Control::Pause)
        .await
        .unwrap();
    assert_eq!(paused.status, RunStatus::Paused);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        harness.effects.calls().is_empty(),
        "nothing runs while paused"
    );
    let resumed = harness.workflows.control(&run, Control::Run).await.unwrap();
    assert_eq!(resumed.status, RunStatus::Running);
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Finished);

    let long = harness_with(
        &[WAITING.replace("{{NAP}}", "30m").as_str()],
        Arc::default(),
        RecordingEffects::new(),
        RunLimits::default(),
    )
    .await;
    let run = start(&long, "waiting", json!({})).await;
    let cancelled = long.workflows.control(&run, Control::Cancel).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(long.effects.calls().is_empty());
    assert!(matches!(
        long.workflows.control(&run, Control::Run).await,
        Err(crate::runs::WorkflowError::Ended(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn conditions_choose_a_branch_and_sub_workflows_run_inside_the_run() {
    let parent = r#"
name = "parent"
owner = "person:ada"
[[steps]]
id = "check"
if = "{{ input.level }}"
greater_than = 5
then = [{ id = "loud", workflow = "child", input = { word = "high {{ input.level }}" } }]
else = [{ id = "quiet", send = "low", to = "web:ada" }]
"#;
    let child = r#"
name = "child"
owner = "person:ada"
output = "{{ steps.say.output }}"
[[steps]]
id = "say"
model = "say {{ input.word }} in {{ workflow.name }}"
"#;
    let harness = harness(&[child, parent]).await;
    let run = start(&harness, "parent", json!({"level": 9})).await;
    let (_, records) = ended(&harness.workflows, &run).await;
    assert_eq!(
        output(&records),
        json!({"holds": true, "output": "summary of: say high 9 in child"})
    );
    assert_eq!(harness.effects.calls(), vec![format!("{run}:loud/say:1")]);

    let run = start(&harness, "parent", json!({"level": "2"})).await;
    ended(&harness.workflows, &run).await;
    assert_eq!(
        harness.effects.sent(),
        vec![("web:ada".to_owned(), "low".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_journal_over_its_limit_fails_the_run_with_a_clear_error() {
    let store: Arc<MemoryWorkflowStore> = Arc::default();
    let effects = RecordingEffects::new();
    effects.script(
        "t.a",
        ToolScript::Answer {
            value: json!("x".repeat(5 * 1024 * 1024)),
            delay: Duration::ZERO,
        },
    );
    let harness = harness_with(&[TWO_TOOLS], store, effects, RunLimits::default()).await;
    let run = start(&harness, "two", json!({"city": "Lyon"})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    let error = summary.error.unwrap();
    assert_eq!(error.code, crate::effects::StepErrorCode::JournalTooLarge);
    assert!(error.message.contains("limit"), "{}", error.message);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_enters_too_many_steps_fails_with_a_clear_error() {
    let limits = RunLimits {
        max_steps: 2,
        hold: Vec::new(),
    };
    let harness = harness_with(
        &[TWO_TOOLS],
        Arc::default(),
        RecordingEffects::new(),
        limits,
    )
    .await;
    let run = start(&harness, "two", json!({"city": "Lyon"})).await;
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(
        summary.error.unwrap().code,
        crate::effects::StepErrorCode::TooManySteps
    );
    assert_eq!(harness.effects.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn starting_a_run_id_that_exists_starts_nothing() {
    let harness = harness(&[TWO_TOOLS]).await;
    let request = StartRun {
        workflow: "two".into(),
        input: Map::from_iter([("city".to_owned(), json!("Lyon"))]),
        cause: Cause::Manual { by: "test".into() },
        run: Some("two.fixed".into()),
    };
    harness.workflows.start(request.clone()).await.unwrap();
    ended(&harness.workflows, "two.fixed").await;
    harness.workflows.start(request).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(harness.effects.calls().len(), 3);
    assert_eq!(harness.store.summaries().await.unwrap().len(), 1);
}

const ASKING: &str = r#"
name = "asking"
owner = "person:ada"
[[steps]]
id = "ask"
send = "Book it?"
to = "telegram:42"
[[steps]]
id = "answer"
wait_reply = "telegram:42"
timeout = "10m"
[[steps]]
id = "decide"
if = "{{ steps.answer.output.text }}"
contains = "yes"
then = [{ id = "book", send = "Booked.", to = "telegram:42" }]
else = [{ id = "skip", send = "Not booked.", to = "telegram:42" }]
"#;

fn reply(text: &str, at_ms: i64) -> crate::events::ArrivedMessage {
    crate::events::ArrivedMessage {
        id: "m1".into(),
        platform: "telegram".into(),
        sender_id: "42".into(),
        conversation_id: "42".into(),
        person: None,
        text: text.into(),
        at_ms,
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_waits_for_the_persons_reply_and_goes_on_with_it() {
    let harness = harness(&[ASKING]).await;
    let run = start(&harness, "asking", json!({})).await;
    while harness.effects.sent().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let now = harness.workflows.clock().now_ms();
    assert!(harness.workflows.replies().offer(&reply("yes please", now)));
    ended(&harness.workflows, &run).await;
    let texts: Vec<String> = harness
        .effects
        .sent()
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(texts, ["Book it?", "Booked."]);
}

#[tokio::test(start_paused = true)]
async fn a_reply_that_never_comes_ends_the_wait_at_its_timeout() {
    let harness = harness(&[ASKING]).await;
    let run = start(&harness, "asking", json!({})).await;
    let (_, records) = ended(&harness.workflows, &run).await;
    let texts: Vec<String> = harness
        .effects
        .sent()
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(texts, ["Book it?", "Not booked."]);
    let waited = records.iter().find_map(|record| match record {
        Record::StepFinished { step, output, .. } if step == "answer" => Some(output.clone()),
        _ => None,
    });
    assert_eq!(waited, Some(json!({"replied": false, "text": ""})));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_engine_stops_the_runs_the_failed_one_left_and_takes_them_up_once() {
    let harness = harness(&[WAITING.replace("{{NAP}}", "10s").as_str()]).await;
    let run = start(&harness, "waiting", json!({})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The engine's actor dies (ractor leaves its run actors running), and is started again
    // as its supervisor would.
    let failed = harness.workflows.spawn().await.unwrap();
    let (summary, _) = ended(&harness.workflows, &run).await;
    assert_eq!(summary.status, RunStatus::Finished);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        harness.effects.calls(),
        vec![format!("{run}:after:1")],
        "the tool after the wait runs once"
    );
    failed.stop(None);
}
