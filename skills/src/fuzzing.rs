//! Entry points for the fuzzers in `fuzz/` (and their regression tests): what an HTTP
//! skill or an MCP server answers, read by the same code a tool call reads it with, and
//! the manifest published into a skill directory as the node would. Any input must end in
//! a value or a typed error; a panic is a bug. Nothing but the fuzzers calls these.

use std::time::Duration;

use serde_json::Value;
use troupe_actors::skill::{Grant, SkillDirectory, SkillManifest};

const SKILL: &str = "fuzz";

/// An answer to one of the node's requests; the first byte picks which, the next two are
/// the HTTP status where there is one, the rest is the body.
pub fn answer(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let (status, body) = status_and_body(rest);
            if let Ok(manifest) = crate::http::manifest_answer(status, body) {
                publish(&manifest);
            }
        }
        1 => {
            let (status, body) = status_and_body(rest);
            if let Ok(result) = crate::http::execute_answer(status, &body) {
                let _ = result.to_string();
            }
        }
        2 => {
            if let Ok(result) = serde_json::from_slice::<rmcp::model::CallToolResult>(rest) {
                let _ = crate::mcp::result_value(&result).to_string();
            }
        }
        _ => {
            if let Ok(listed) = serde_json::from_slice::<rmcp::model::ListToolsResult>(rest) {
                publish(&SkillManifest {
                    name: SKILL.into(),
                    description: String::new(),
                    version: String::new(),
                    tools: listed
                        .tools
                        .into_iter()
                        .map(crate::mcp::skill_tool)
                        .collect(),
                    permissions: Default::default(),
                });
            }
        }
    }
}

/// As the HTTP skill reads an answer: a body that is not JSON is `null`.
fn status_and_body(data: &[u8]) -> (u16, Value) {
    let status = match data {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => 200,
    };
    let body = data.get(2..).unwrap_or_default();
    (status, serde_json::from_slice(body).unwrap_or(Value::Null))
}

/// Offers the manifest's tools as a node would: compiled, named, and listed.
fn publish(manifest: &SkillManifest) {
    let directory = SkillDirectory::default();
    directory.declare(SKILL, "fuzz", Grant::default(), Duration::from_secs(1));
    directory.publish(SKILL, manifest);
    let _ = directory.statuses();
}

#[cfg(test)]
mod tests {
    use troupe_actors::skill::SkillState;

    use super::*;

    #[test]
    fn a_published_manifest_with_a_broken_schema_disables_the_skill_instead_of_panicking() {
        let manifest: SkillManifest = serde_json::from_value(serde_json::json!({
            "name": "x", "description": "", "version": "1",
            "tools": [{"name": "t", "description": "", "parameters": {"type": 7}}]
        }))
        .unwrap();
        let directory = SkillDirectory::default();
        directory.declare(SKILL, "fuzz", Grant::default(), Duration::from_secs(1));
        directory.publish(SKILL, &manifest);
        assert_eq!(directory.state(SKILL), Some(SkillState::Disabled));
    }

    #[test]
    fn every_kind_of_answer_reads_without_panicking() {
        answer(b"\x00\x00\xc8{\"name\":\"n\",\"tools\":[]}");
        answer(b"\x01\x01\xf4{\"error\":{\"code\":\"x\"}}");
        answer(b"\x02{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}");
        answer(b"\x03{\"tools\":[]}");
    }
}
