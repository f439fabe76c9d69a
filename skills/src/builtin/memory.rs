//! `memory`: long-term memory by meaning (see `troupe_actors::memory`): remember a fact,
//! search what is remembered by what it means, list it, and forget, for good, a memory or
//! everything about something. Per person: linked accounts share one memory.

use std::sync::Arc;

use serde_json::{Value, json};
use troupe_actors::memory::{Memories, MemoryError, MemoryId, Recalled};
use troupe_actors::skill::{Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest};

use super::{text_argument, tool};

/// Most memories one search or list answers.
const MAX_LISTED: usize = 50;

pub(super) struct MemorySkill {
    memories: Arc<Memories>,
}

impl MemorySkill {
    pub(super) const fn new(memories: Arc<Memories>) -> Self {
        Self { memories }
    }
}

fn failed(error: MemoryError) -> SkillError {
    match error {
        MemoryError::Invalid(reason) => SkillError::invalid(reason),
        other => SkillError::failed(other.to_string()),
    }
}

fn recalled_json(recalled: &Recalled) -> Value {
    json!({"id": recalled.id, "text": recalled.text, "kind": recalled.kind,
        "created_at": recalled.created_at, "similarity": (recalled.similarity * 1000.0).round() / 1000.0})
}

impl MemorySkill {
    async fn forget(&self, person: &str, arguments: &Value) -> Result<Value, SkillError> {
        let forgotten: Vec<Value> = match (arguments["id"].as_str(), arguments["about"].as_str()) {
            (Some(id), _) => {
                let id = MemoryId::parse(id).ok_or_else(|| {
                    SkillError::invalid("`id` is a memory id: m- and 16 hex digits")
                })?;
                let gone = self
                    .memories
                    .forget(person, std::slice::from_ref(&id))
                    .await
                    .map_err(failed)?;
                if gone == 0 {
                    Vec::new()
                } else {
                    vec![json!({"id": id})]
                }
            }
            (None, Some(about)) => self
                .memories
                .forget_about(person, about)
                .await
                .map_err(failed)?
                .iter()
                .map(|memory| json!(memory.view()))
                .collect(),
            (None, None) => {
                return Err(SkillError::invalid(
                    "give the memory's `id`, or `about` what",
                ));
            }
        };
        if forgotten.is_empty() {
            return Err(SkillError::new(
                SkillErrorCode::NotFound,
                "no memory matched",
            ));
        }
        Ok(json!({"forgotten": forgotten}))
    }
}

#[async_trait::async_trait]
impl Skill for MemorySkill {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        Ok(SkillManifest {
            name: "memory".into(),
            description: "Long-term memory by meaning: what the person told you, across conversations and platforms. Relevant memories are also recalled for you before each message.".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            tools: vec![
                tool(
                    "remember",
                    "Keeps a fact about the person for later (write it as a full sentence).",
                    json!({"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 2000}},
                        "required": ["text"], "additionalProperties": false}),
                ),
                tool(
                    "search",
                    "Finds the memories nearest in meaning to the query, best first.",
                    json!({"type": "object", "properties": {"query": {"type": "string", "minLength": 1},
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LISTED}},
                        "required": ["query"], "additionalProperties": false}),
                ),
                tool(
                    "list",
                    "Lists the most recent memories.",
                    json!({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LISTED}},
                        "additionalProperties": false}),
                ),
                tool(
                    "forget",
                    "Deletes for good the memory with this id, or every memory about something.",
                    json!({"type": "object", "properties": {"id": {"type": "string"}, "about": {"type": "string", "minLength": 1}},
                        "additionalProperties": false}),
                ),
            ],
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let person = call.session.person.as_str();
        let limit = call.arguments["limit"]
            .as_u64()
            .map_or(10, |limit| limit as usize)
            .min(MAX_LISTED);
        match call.action.as_str() {
            "remember" => {
                let kept = self
                    .memories
                    .remember(person, text_argument(&call.arguments, "text")?)
                    .await
                    .map_err(failed)?;
                Ok(json!({"remembered": kept.view()}))
            }
            "search" => {
                let query = text_argument(&call.arguments, "query")?;
                let found = self
                    .memories
                    .search(person, query, limit)
                    .await
                    .map_err(failed)?;
                Ok(json!({"memories": found.iter().map(recalled_json).collect::<Vec<_>>()}))
            }
            "list" => {
                let all = self.memories.list(person).await.map_err(failed)?;
                let newest: Vec<Value> = all
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|memory| json!(memory.view()))
                    .collect();
                Ok(json!({"count": all.len(), "memories": newest}))
            }
            "forget" => self.forget(person, &call.arguments).await,
            other => Err(SkillError::invalid(format!("no tool `{other}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use troupe_actors::memory::{LocalMemoryStore, MemoryConfig};
    use troupe_actors::testing::WordsEmbedder;

    use super::super::tests::call;
    use super::*;

    #[tokio::test]
    async fn remembers_searches_lists_and_forgets_per_person() {
        let dir = tempfile::tempdir().unwrap();
        let memories = Memories::new(
            Arc::new(WordsEmbedder),
            Arc::new(LocalMemoryStore::new(dir.path())),
            MemoryConfig::default(),
        );
        let skill = MemorySkill::new(Arc::new(memories));
        let ada = "person:ada";
        let kept = skill
            .execute(call(
                ada,
                "remember",
                json!({"text": "Her cat is called Mimi"}),
            ))
            .await
            .unwrap();
        let id = kept["remembered"]["id"].as_str().unwrap().to_owned();
        skill
            .execute(call(
                ada,
                "remember",
                json!({"text": "The train leaves at 7:45"}),
            ))
            .await
            .unwrap();
        let found = skill
            .execute(call(
                ada,
                "search",
                json!({"query": "cat called", "limit": 1}),
            ))
            .await
            .unwrap();
        assert_eq!(found["memories"][0]["text"], "Her cat is called Mimi");
        assert_eq!(found["memories"].as_array().unwrap().len(), 1);
        let listed = skill.execute(call(ada, "list", json!({}))).await.unwrap();
        assert_eq!(listed["count"], 2);
        assert_eq!(
            listed["memories"][0]["text"], "The train leaves at 7:45",
            "newest first"
        );
        let others = skill
            .execute(call("telegram:9", "list", json!({})))
            .await
            .unwrap();
        assert_eq!(others["count"], 0, "a person's memory is theirs");
        let gone = skill
            .execute(call(ada, "forget", json!({"id": id})))
            .await
            .unwrap();
        assert_eq!(gone["forgotten"].as_array().unwrap().len(), 1);
        let gone = skill
            .execute(call(ada, "forget", json!({"about": "train"})))
            .await
            .unwrap();
        assert_eq!(gone["forgotten"][0]["text"], "The train leaves at 7:45");
        let none = skill
            .execute(call(ada, "forget", json!({"about": "train"})))
            .await
            .unwrap_err();
        assert_eq!(none.code, SkillErrorCode::NotFound);
        let bad = skill
            .execute(call(ada, "forget", json!({"id": "nope"})))
            .await
            .unwrap_err();
        assert_eq!(bad.code, SkillErrorCode::InvalidArguments);
    }
}
