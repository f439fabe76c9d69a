//! Skills that are slow to start: a turn that arrives while a skill reads its manifest
//! waits for it (within its time limit), so it is offered the skill's tools; a skill that
//! never answers holds turns and readiness for its time limit and no longer. On tokio's
//! paused clock: the manifest's delay passes as soon as everything else is idle.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::tests::{events_of, message};
use super::*;
use crate::node::{NodeHandle, NodeSetup, ProviderSetup, start_node};
use crate::session::SessionConfig;
use crate::snapshot::{MemorySnapshotStore, SnapshotStore};
use crate::supervisor::RestartBudget;
use crate::testing::{Scripted, ScriptedProvider};

/// A skill whose manifest comes after `delay` (`None`: never).
struct Slow {
    delay: Option<Duration>,
}

#[async_trait::async_trait]
impl Skill for Slow {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        match self.delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => std::future::pending().await,
        }
        Ok(SkillManifest {
            name: "slow".into(),
            description: "slow to start".into(),
            version: "1".into(),
            tools: vec![SkillTool {
                name: "ping".into(),
                description: "answers pong".into(),
                parameters: json!({"type": "object"}),
                confirm: false,
            }],
            permissions: Requirements::default(),
        })
    }

    async fn execute(&self, _call: SkillCall) -> Result<Value, SkillError> {
        Ok(json!("pong"))
    }
}

async fn node_with(skill: Slow, limit: Duration) -> (NodeHandle, Arc<ScriptedProvider>) {
    let provider = Arc::new(ScriptedProvider::new(
        "main",
        [Scripted::Text(vec!["hello".into()])],
    ));
    let setup = NodeSetup {
        session: SessionConfig {
            system_prompt: "".into(),
            history_window: 50,
            idle_passivate: Duration::from_secs(600),
            provider: "main".into(),
            turn_timeout: Duration::from_secs(120),
            tools: ToolPolicy {
                max_rounds: 4,
                max_parallel: 4,
            },
        },
        store: Arc::new(MemorySnapshotStore::new()) as Arc<dyn SnapshotStore>,
        providers: vec![ProviderSetup {
            provider: provider.clone(),
            policy: crate::model_worker::ProviderPolicy::default(),
        }],
        skills: vec![SkillSetup {
            name: "slow".into(),
            skill: Arc::new(skill),
            grant: Grant::default(),
            timeout: limit,
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
    (node, provider)
}

fn offered(provider: &ScriptedProvider) -> Vec<String> {
    provider.requests()[0]
        .tools
        .iter()
        .map(|tool| tool.name.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_turn_sent_while_a_skill_starts_is_offered_its_tools() {
    let delay = Duration::from_secs(2);
    let (node, provider) = node_with(Slow { delay: Some(delay) }, Duration::from_secs(10)).await;
    assert_eq!(node.skills().starting(), vec!["slow".to_owned()]);
    let started = tokio::time::Instant::now();

    events_of(&node, message("m1", "ann", "hi")).await;

    assert_eq!(offered(&provider), vec!["slow__ping".to_owned()]);
    assert!(
        started.elapsed() >= delay,
        "the turn went ahead of the skill"
    );
    assert!(node.skills().starting().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_skill_that_never_answers_holds_turns_for_its_time_limit_only() {
    let limit = Duration::from_secs(3);
    let (node, provider) = node_with(Slow { delay: None }, limit).await;
    let started = tokio::time::Instant::now();

    events_of(&node, message("m1", "ann", "hi")).await;

    assert!(offered(&provider).is_empty());
    let waited = started.elapsed();
    assert!(waited >= limit && waited < limit * 2, "waited {waited:?}");
    assert!(node.skills().starting().is_empty());
    assert_eq!(node.skills().state("slow"), Some(SkillState::Unavailable));
    let status = &node.skills().statuses()[0];
    let error = status.last_error.as_deref().unwrap_or("");
    assert!(error.contains("no manifest within 3s"), "{error}");
}
