//! The tool loop end to end inside one node: a scripted model, an in-memory store and a
//! test skill whose tools succeed, fail, hang, run in parallel or need confirmation; and the
//! skill directory's catalog under skills that publish at the same time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use super::*;
use crate::SessionKey;
use crate::message::{ContentType, InboundMessage, MessageParts};
use crate::model_worker::ProviderPolicy;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::provider::Role;
use crate::session::SessionConfig;
use crate::snapshot::{MemorySnapshotStore, SnapshotStore};
use crate::supervisor::RestartBudget;
use crate::testing::{Scripted, ScriptedProvider};
use crate::turn::{ErrorCode, TurnEvent};

/// A skill with one tool per behaviour under test.
struct Toolbox {
    pair: Barrier,
}

fn tool(name: &str, parameters: Value, confirm: bool) -> SkillTool {
    SkillTool {
        name: name.into(),
        description: format!("the {name} tool"),
        parameters,
        confirm,
    }
}

#[async_trait::async_trait]
impl Skill for Toolbox {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        let text = json!({"type": "object", "properties": {"text": {"type": "string"}},
            "required": ["text"], "additionalProperties": false});
        let empty = json!({"type": "object"});
        Ok(SkillManifest {
            name: "box".into(),
            description: "test tools".into(),
            version: "1".into(),
            tools: vec![
                tool("echo", text, false),
                tool("pair", empty.clone(), false),
                tool("hang", empty.clone(), false),
                tool("boom", empty.clone(), false),
                tool("danger", empty, true),
            ],
            permissions: Requirements::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        match call.action.as_str() {
            "echo" => Ok(json!({"said": call.arguments["text"], "by": call.session.person})),
            // Both calls must be in flight at once to get past the barrier.
            "pair" => match tokio::time::timeout(Duration::from_secs(2), self.pair.wait()).await {
                Ok(_) => Ok(json!("paired")),
                Err(_) => Err(SkillError::failed("the other call never ran alongside")),
            },
            "hang" => std::future::pending().await,
            "boom" => Err(SkillError::failed("it broke")),
            "danger" => Ok(json!("done something dangerous")),
            other => Err(SkillError::new(SkillErrorCode::UnknownTool, other)),
        }
    }
}

struct Setup {
    node: NodeHandle,
    provider: Arc<ScriptedProvider>,
    store: Arc<MemorySnapshotStore>,
}

async fn node(script: Vec<Scripted>, grant: Grant, max_rounds: u32) -> Setup {
    let provider = Arc::new(ScriptedProvider::new("main", script));
    let store = Arc::new(MemorySnapshotStore::new());
    let setup = NodeSetup {
        session: SessionConfig {
            system_prompt: "".into(),
            history_window: 50,
            idle_passivate: Duration::from_secs(600),
            provider: "main".into(),
            turn_timeout: Duration::from_secs(5),
            tools: ToolPolicy {
                max_rounds,
                max_parallel: 4,
            },
        },
        store: Arc::clone(&store) as Arc<dyn SnapshotStore>,
        providers: vec![ProviderSetup {
            provider: provider.clone(),
            policy: ProviderPolicy::default(),
        }],
        skills: vec![SkillSetup {
            name: "box".into(),
            skill: Arc::new(Toolbox {
                pair: Barrier::new(2),
            }),
            grant,
            timeout: Duration::from_millis(300),
        }],
        budget: RestartBudget::default(),
        backlog: crate::backlog::BacklogLimits::default(),
        turn_context: None,
        inbox: None,
        uploads: None,
        memories: None,
        usage: None,
    };
    let (node, _) = start_node(setup, |_| Vec::new()).await.unwrap();
    for _ in 0..200 {
        if node.skills().state("box") == Some(SkillState::Available) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Setup {
        node,
        provider,
        store,
    }
}

pub(super) fn message(id: &str, sender: &str, payload: &str) -> InboundMessage {
    message_in(id, sender, sender, payload)
}

/// A message `sender` writes into `conversation`.
fn message_in(id: &str, sender: &str, conversation: &str, payload: &str) -> InboundMessage {
    InboundMessage::new(MessageParts {
        id: id.into(),
        platform: "test".into(),
        sender_id: sender.into(),
        conversation_id: conversation.into(),
        content_type: ContentType::Text,
        payload: payload.into(),
        timestamp: 1,
        reply_to: None,
        attachments: Vec::new(),
        metadata: Default::default(),
    })
    .expect("a valid message")
}

/// Every event of a turn, the final one last.
async fn turn(node: &NodeHandle, id: &str, sender: &str, payload: &str) -> Vec<TurnEvent> {
    events_of(node, message(id, sender, payload)).await
}

pub(super) async fn events_of(node: &NodeHandle, message: InboundMessage) -> Vec<TurnEvent> {
    let mut events = node.route(message).unwrap();
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the turn ended in time")
            .expect("a final event");
        let last = event.is_final();
        seen.push(event);
        if last {
            return seen;
        }
    }
}

fn calls(calls: &[(&str, &str, &str)]) -> Scripted {
    Scripted::Tools(
        calls
            .iter()
            .map(|(id, name, args)| ((*id).into(), (*name).into(), (*args).into()))
            .collect(),
    )
}

fn results(events: &[TurnEvent]) -> Vec<(String, bool, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            TurnEvent::ToolResult {
                call_id,
                ok,
                content,
                ..
            } => Some((call_id.clone(), *ok, content.clone())),
            _ => None,
        })
        .collect()
}

fn final_text(events: &[TurnEvent]) -> String {
    match events.last() {
        Some(TurnEvent::Reply { reply, .. }) => reply.payload.clone(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn awaiting(events: &[TurnEvent]) -> Option<crate::Awaiting> {
    match events.last() {
        Some(TurnEvent::Reply { reply, .. }) => reply.awaiting,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[tokio::test]
async fn runs_a_tool_and_feeds_the_result_back() {
    let setup = node(
        vec![
            calls(&[("c1", "box__echo", r#"{"text":"hi"}"#)]),
            Scripted::Text(vec!["it said hi".into()]),
        ],
        Grant::default(),
        4,
    )
    .await;
    let events = turn(&setup.node, "m1", "alice", "say hi").await;
    assert!(
        matches!(&events[0], TurnEvent::ToolCall { call_id, name, arguments, .. }
        if call_id == "c1" && name == "box__echo" && arguments == r#"{"text":"hi"}"#)
    );
    let results = results(&events);
    assert_eq!(results.len(), 1);
    let (_, ok, content) = &results[0];
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap(),
        json!({"said": "hi", "by": "test:alice"})
    );
    assert_eq!(final_text(&events), "it said hi");
    let requests = setup.provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].tools.len(), 5, "every tool is offered");
    let second = &requests[1].messages;
    assert_eq!(second.len(), 3);
    assert_eq!(second[1].role, Role::Assistant);
    assert_eq!(second[1].tool_calls[0].id, "c1");
    assert_eq!(second[2].role, Role::Tool);
    assert_eq!(second[2].tool_call_id.as_deref(), Some("c1"));
    // The whole round is in the stored history.
    let key = SessionKey::new_unchecked("test", "alice");
    let stored = setup.store.load(&key).await.unwrap().unwrap();
    let roles: Vec<Role> = stored.history.iter().map(|entry| entry.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
}

#[tokio::test]
async fn parallel_calls_run_at_the_same_time() {
    let setup = node(
        vec![
            calls(&[("a", "box__pair", "{}"), ("b", "box__pair", "{}")]),
            Scripted::Text(vec!["both".into()]),
        ],
        Grant::default(),
        4,
    )
    .await;
    let events = turn(&setup.node, "m1", "alice", "go").await;
    let results = results(&events);
    assert_eq!(
        results,
        [
            ("a".to_owned(), true, "paired".to_owned()),
            ("b".to_owned(), true, "paired".to_owned())
        ]
    );
    assert_eq!(final_text(&events), "both");
}

#[tokio::test]
async fn failures_timeouts_and_bad_arguments_go_back_to_the_model() {
    let setup = node(
        vec![
            calls(&[
                ("1", "box__boom", "{}"),
                ("2", "box__hang", "{}"),
                ("3", "box__echo", r#"{"text": 5}"#),
                ("4", "box__echo", "not json"),
                ("5", "nobody__nothing", "{}"),
            ]),
            Scripted::Text(vec!["sorry".into()]),
        ],
        Grant::default(),
        4,
    )
    .await;
    let events = turn(&setup.node, "m1", "alice", "try").await;
    let results = results(&events);
    let codes: Vec<String> = results
        .iter()
        .map(|(_, ok, content)| {
            assert!(!ok);
            let error: Value = serde_json::from_str(content).unwrap();
            error["error"]["code"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        codes,
        [
            "failed",
            "timeout",
            "invalid_arguments",
            "invalid_arguments",
            "unknown_tool"
        ]
    );
    assert!(results[2].2.contains("/text"), "{}", results[2].2);
    assert_eq!(final_text(&events), "sorry");
    let status = &setup.node.skills().statuses()[0];
    assert_eq!((status.calls, status.failures), (2, 2));
}

#[tokio::test]
async fn too_many_rounds_end_the_turn_and_leave_no_trace() {
    let always = || calls(&[("x", "box__echo", r#"{"text":"again"}"#)]);
    let setup = node(
        vec![always(), always(), always(), always()],
        Grant::default(),
        2,
    )
    .await;
    let events = turn(&setup.node, "m1", "alice", "loop").await;
    let Some(TurnEvent::Failed { error, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(error.code, ErrorCode::ToolRoundsExceeded);
    // Two rounds ran; the third was refused and the model asked once more.
    assert_eq!(setup.provider.requests().len(), 4);
    let ran = results(&events).iter().filter(|(_, ok, _)| *ok).count();
    assert_eq!(ran, 2);
    let history = setup
        .node
        .history(SessionKey::new_unchecked("test", "alice"))
        .await
        .unwrap();
    assert!(history.is_none_or(|view| view.history.is_empty()));
}

#[tokio::test]
async fn the_model_may_answer_after_the_round_limit() {
    let setup = node(
        vec![
            calls(&[("x", "box__echo", r#"{"text":"1"}"#)]),
            Scripted::Text(vec!["enough".into()]),
        ],
        Grant::default(),
        0,
    )
    .await;
    let events = turn(&setup.node, "m1", "alice", "go").await;
    assert_eq!(final_text(&events), "enough");
    let results = results(&events);
    assert!(!results[0].1 && results[0].2.contains("limit of 0 tool rounds"));
}

#[tokio::test]
async fn tools_are_offered_only_to_the_people_granted() {
    let grant = Grant {
        users: vec!["test:bob".into()],
        ..Grant::default()
    };
    let setup = node(
        vec![
            calls(&[("x", "box__echo", r#"{"text":"sneaky"}"#)]),
            Scripted::Text(vec!["no".into()]),
        ],
        grant,
        4,
    )
    .await;
    let events = turn(&setup.node, "m1", "alice", "go").await;
    assert!(setup.provider.requests()[0].tools.is_empty());
    let results = results(&events);
    assert!(results[0].2.contains("forbidden"), "{}", results[0].2);
    let bob = turn(&setup.node, "m2", "bob", "go").await;
    assert_eq!(final_text(&bob), "echo: go");
    assert_eq!(setup.provider.requests()[2].tools.len(), 5);
}

#[tokio::test]
async fn confirmation_waits_for_yes_across_a_snapshot() {
    let setup = node(
        vec![
            calls(&[("d1", "box__danger", "{}")]),
            Scripted::Text(vec!["done".into()]),
            calls(&[("d2", "box__danger", "{}")]),
            Scripted::Text(vec!["fine, I won't".into()]),
        ],
        Grant::default(),
        4,
    )
    .await;
    let asked = turn(&setup.node, "m1", "alice", "do it").await;
    let question = final_text(&asked);
    assert!(
        question.contains("box__danger") && question.contains("**yes**"),
        "{question}"
    );
    assert!(results(&asked).is_empty(), "nothing ran yet");
    let key = SessionKey::new_unchecked("test", "alice");
    let stored = setup.store.load(&key).await.unwrap().unwrap();
    assert_eq!(stored.pending.as_ref().unwrap().calls[0].id, "d1");
    // The reply says it waits for a yes or no, and so do the history and a retry of it.
    assert_eq!(awaiting(&asked), Some(crate::Awaiting::Confirmation));
    let view = setup.node.history(key.clone()).await.unwrap().unwrap();
    assert_eq!(view.awaiting, Some(crate::Awaiting::Confirmation));
    let retried = turn(&setup.node, "m1", "alice", "do it").await;
    assert_eq!(awaiting(&retried), Some(crate::Awaiting::Confirmation));

    let approved = turn(&setup.node, "m2", "alice", "yes").await;
    assert_eq!(
        results(&approved),
        [("d1".into(), true, "done something dangerous".into())]
    );
    assert_eq!(final_text(&approved), "done");
    assert_eq!(awaiting(&approved), None);
    let view = setup.node.history(key.clone()).await.unwrap().unwrap();
    assert_eq!(view.awaiting, None);

    let asked_again = turn(&setup.node, "m3", "alice", "again").await;
    assert!(final_text(&asked_again).contains("permission"));
    let refused = turn(&setup.node, "m4", "alice", "no").await;
    let results = results(&refused);
    assert!(!results[0].1 && results[0].2.contains("refused"));
    assert_eq!(final_text(&refused), "fine, I won't");
    let stored = setup.store.load(&key).await.unwrap().unwrap();
    assert!(stored.pending.is_none());
}

#[tokio::test]
async fn only_the_person_asked_can_confirm() {
    let setup = node(
        vec![
            calls(&[("d1", "box__danger", "{}")]),
            Scripted::Text(vec!["not yours to say".into()]),
            Scripted::Text(vec!["done".into()]),
        ],
        Grant::default(),
        4,
    )
    .await;
    let in_group = |id: &str, sender: &str, payload: &str| message_in(id, sender, "group", payload);
    events_of(&setup.node, in_group("m1", "alice", "do it")).await;
    // Bob says yes in the same group: an ordinary message; alice's calls keep waiting.
    let bob = events_of(&setup.node, in_group("m2", "bob", "yes")).await;
    assert!(results(&bob).is_empty(), "bob's yes ran nothing: {bob:?}");
    assert_eq!(final_text(&bob), "not yours to say");
    let alice = events_of(&setup.node, in_group("m3", "alice", "yes")).await;
    assert_eq!(results(&alice)[0].0, "d1");
    assert_eq!(final_text(&alice), "done");
}

fn session_of(sender_id: &str) -> SkillSession {
    SkillSession {
        key: format!("test:{sender_id}"),
        platform: "test".into(),
        conversation_id: sender_id.into(),
        sender_id: sender_id.into(),
        person: format!("test:{sender_id}"),
        message_id: "m1".into(),
        reply_route: None,
    }
}

/// Skills start at once and publish their manifests from several threads; every tool must
/// be on offer afterwards, whichever publication finished last.
#[test]
fn skills_published_at_the_same_time_are_all_offered() {
    const SKILLS: usize = 8;
    for _round in 0..200 {
        let directory = Arc::new(SkillDirectory::default());
        for index in 0..SKILLS {
            let grant = if index % 2 == 0 {
                Grant {
                    users: vec!["test:ada".into()],
                    ..Grant::default()
                }
            } else {
                Grant::default()
            };
            directory.declare(
                &format!("s{index}"),
                "builtin",
                grant,
                Duration::from_secs(1),
            );
        }
        let start = Arc::new(std::sync::Barrier::new(SKILLS));
        let publishers: Vec<_> = (0..SKILLS)
            .map(|index| {
                let (directory, start) = (Arc::clone(&directory), Arc::clone(&start));
                std::thread::spawn(move || {
                    let manifest = SkillManifest {
                        name: format!("s{index}"),
                        description: String::new(),
                        version: "1".into(),
                        tools: vec![tool("act", json!({"type": "object"}), false)],
                        permissions: Requirements::default(),
                    };
                    start.wait();
                    directory.publish(&format!("s{index}"), &manifest);
                })
            })
            .collect();
        for publisher in publishers {
            publisher.join().unwrap();
        }
        let names = |sender: &str| -> Vec<String> {
            let tools = directory.tools_for(&session_of(sender));
            tools.iter().map(|tool| tool.name.clone()).collect()
        };
        assert_eq!(names("ada").len(), SKILLS, "{:?}", names("ada"));
        assert_eq!(names("bob").len(), SKILLS / 2, "{:?}", names("bob"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_tool_round_lets_the_call_finish_and_asks_the_model_no_more() {
    let setup = node(
        vec![calls(&[("c1", "box__hang", "{}")])],
        Grant::default(),
        4,
    )
    .await;
    let mut events = setup
        .node
        .route(message("m1", "alice", "wait for it"))
        .unwrap();
    let started = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap();
    assert!(
        matches!(started, Some(TurnEvent::ToolCall { .. })),
        "{started:?}"
    );
    let key = SessionKey::new_unchecked("test", "alice");
    assert_eq!(
        setup.node.stop(&key, "m1"),
        crate::stop::StopOutcome::Stopping
    );
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        let last = event.is_final();
        seen.push(event);
        if last {
            break;
        }
    }
    // The call ran to its time limit and its result is recorded; the model was not asked again.
    assert_eq!(results(&seen).len(), 1);
    let Some(TurnEvent::Reply { reply, .. }) = seen.last() else {
        panic!("a turn that ran a tool keeps it: {seen:?}");
    };
    assert!(reply.stopped);
    assert_eq!(reply.payload, "");
    assert_eq!(setup.provider.requests().len(), 1);
    let stored = setup.store.load(&key).await.unwrap().unwrap();
    let roles: Vec<Role> = stored.history.iter().map(|entry| entry.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
}
