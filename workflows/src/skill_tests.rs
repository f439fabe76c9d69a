use std::sync::Arc;

use serde_json::json;
use troupe_actors::skill::SkillSession;

use super::*;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::engine::RunLimits;
use crate::journal::WorkflowStore;
use crate::runs::EngineParts;
use crate::testing::{MemoryWorkflowStore, RecordingEffects};

async fn skill() -> (WorkflowsSkill, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let workflows = Workflows::new(EngineParts {
        catalog: Arc::new(Catalog::load(dir.path()).unwrap()),
        store: Arc::new(MemoryWorkflowStore::default()) as Arc<dyn WorkflowStore>,
        effects: RecordingEffects::new(),
        replies: Default::default(),
        clock: Clock::system(),
        limits: RunLimits::default(),
        journal_limit: crate::journal::DEFAULT_JOURNAL_LIMIT,
        router: None,
    });
    workflows.spawn().await.unwrap();
    (WorkflowsSkill::new(workflows), dir)
}

fn call(person: &str, action: &str, arguments: Value) -> SkillCall {
    SkillCall {
        call_id: "c".into(),
        action: action.into(),
        arguments,
        session: SkillSession {
            person: person.into(),
            ..SkillSession::default()
        },
    }
}

const BRIEF: &str = "name = \"brief\"\nowner = \"person:someone-else\"\n[[triggers]]\ncron = \"0 7 * * *\"\ntimezone = \"Europe/Berlin\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n";

#[tokio::test]
async fn a_person_creates_lists_runs_and_deletes_their_own_workflow() {
    let (skill, dir) = skill().await;
    let created = skill
        .execute(call("person:ada", "create", json!({"definition": BRIEF})))
        .await
        .unwrap();
    assert_eq!(created, json!({"name": "brief", "replaced": false}));
    let saved = std::fs::read_to_string(dir.path().join("brief.toml")).unwrap();
    assert!(
        saved.contains("owner = \"person:ada\""),
        "the creator owns it: {saved}"
    );

    let listed = skill
        .execute(call("person:ada", "list", json!({})))
        .await
        .unwrap();
    assert_eq!(listed["workflows"][0]["name"], "brief");
    assert!(
        listed["workflows"][0]["next_run"].as_str().is_some(),
        "{listed}"
    );

    let started = skill
        .execute(call("person:ada", "run", json!({"name": "brief"})))
        .await
        .unwrap();
    assert!(started["run"].as_str().unwrap().starts_with("brief."));

    let deleted = skill
        .execute(call("person:ada", "delete", json!({"name": "brief"})))
        .await
        .unwrap();
    assert_eq!(deleted, json!({"deleted": "brief"}));
    assert!(!dir.path().join("brief.toml").exists());
}

#[tokio::test]
async fn nobody_sees_or_touches_another_persons_workflow() {
    let (skill, _dir) = skill().await;
    skill
        .execute(call("person:ada", "create", json!({"definition": BRIEF})))
        .await
        .unwrap();
    let listed = skill
        .execute(call("person:bob", "list", json!({})))
        .await
        .unwrap();
    assert_eq!(listed, json!({"workflows": []}));
    for (action, arguments) in [
        ("run", json!({"name": "brief"})),
        ("delete", json!({"name": "brief"})),
    ] {
        let error = skill
            .execute(call("person:bob", action, arguments))
            .await
            .unwrap_err();
        assert_eq!(error.code, SkillErrorCode::NotFound, "{action}");
    }
    let taken = skill
        .execute(call("person:bob", "create", json!({"definition": BRIEF})))
        .await
        .unwrap_err();
    assert!(taken.message.contains("taken"), "{}", taken.message);
}

#[tokio::test]
async fn an_invalid_definition_is_refused_with_the_key_named() {
    let (skill, _dir) = skill().await;
    let error = skill
        .execute(call(
            "person:ada",
            "create",
            json!({"definition": "name = \"x\"\nowner = \"person:ada\"\n[[steps]]\nid = \"a\"\nwait = \"later\"\n"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code, SkillErrorCode::InvalidArguments);
    assert!(
        error.message.starts_with("steps[0].wait:"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn creating_cancelling_and_deleting_need_confirmation() {
    let (skill, _dir) = skill().await;
    let manifest = skill.manifest().await.unwrap();
    let confirmed: Vec<&str> = manifest
        .tools
        .iter()
        .filter(|tool| tool.confirm)
        .map(|tool| tool.name.as_str())
        .collect();
    assert_eq!(confirmed, ["create", "cancel", "delete"]);
}
