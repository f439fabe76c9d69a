//! Entry points for the fuzzers in `fuzz/`: every parser that takes outside input, driven
//! by the same code the node runs. Each target takes raw bytes; whatever they hold, the
//! code must answer a value or a typed error. A panic, or a broken invariant checked here,
//! is a bug. The regression test below replays the committed corpus and every input that
//! once found a bug, so `cargo test` keeps them fixed without a fuzzer.

mod bridges;

use troupe_actors::ids::SessionKey;
use troupe_actors::message::{DraftDefaults, InboundDraft, MessageLimits};

use crate::gateway::callers::check_platform;
use crate::gateway::frames::{self, ClientFrame, Parsed};
use crate::gateway::openai::{CompletionRequest, chat_request, session_draft};

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/` and the corpus folder) and
/// the function that reads one input.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "ws_frame",
        run: ws_frame,
    },
    Target {
        name: "rest_message",
        run: rest_message,
    },
    Target {
        name: "openai_request",
        run: openai_request,
    },
    Target {
        name: "config",
        run: config,
    },
    Target {
        name: "cluster_envelope",
        run: cluster_envelope,
    },
    Target {
        name: "bridge_webhook",
        run: bridges::webhook,
    },
    Target {
        name: "provider_stream",
        run: provider_stream,
    },
    Target {
        name: "skill_answer",
        run: troupe_skills::fuzzing::answer,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|target| target.name == name)
}

fn defaults(platform: &'static str) -> DraftDefaults<'static> {
    DraftDefaults {
        platform,
        sender_id: None,
        now_unix_secs: 1_700_000_000,
    }
}

/// A validated message keeps the invariants routing relies on.
fn validate(draft: InboundDraft, platform: &'static str) {
    if let Ok(message) = draft.validate(&defaults(platform), MessageLimits::default()) {
        assert_eq!(
            message.platform(),
            platform,
            "the access path sets the platform"
        );
        let key = message.session_key();
        assert_eq!(SessionKey::parse(&key.to_string()), Ok(key));
    }
}

/// A WebSocket text frame (the socket delivers only UTF-8 as text).
pub fn ws_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Parsed::Json {
        frame: Ok(ClientFrame::Message(frame)),
        ..
    } = frames::parse(text)
    {
        validate(frame.into_draft("fuzz-sender"), "ws");
    }
}

/// The body of `POST /api/v1/messages`.
pub fn rest_message(data: &[u8]) {
    let Ok(draft) = serde_json::from_slice::<InboundDraft>(data) else {
        return;
    };
    if check_platform(draft.platform.as_deref(), "api").is_ok() {
        validate(draft, "api");
    }
}

/// The body of `POST /v1/chat/completions`, with and without `user`.
pub fn openai_request(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<CompletionRequest>(data) else {
        return;
    };
    if let Ok(draft) = session_draft("fuzz-user", &request) {
        validate(draft, "openai");
    }
    let limit = MessageLimits::default().max_payload_bytes;
    if let Ok(chat) = chat_request(&request, limit) {
        let text: usize = chat
            .messages
            .iter()
            .map(|message| message.content.len())
            .sum();
        assert!(
            text <= limit * 4,
            "a stateless history stays within its limit"
        );
    }
}

/// A config file, parsed and validated as `troupe serve` and `troupe config check` do.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::TroupeConfig::parse(text) {
        Ok(config) => {
            let _ = config.validate();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// What another node (or anything that can publish on the cluster's subjects) sends.
pub fn cluster_envelope(data: &[u8]) {
    use troupe_cluster::envelope::{InboxEnvelope, ReplyEnvelope, RpcRequest, RpcResponse};
    round_trip::<InboxEnvelope>(data);
    round_trip::<ReplyEnvelope<'static>>(data);
    round_trip::<RpcRequest>(data);
    round_trip::<RpcResponse>(data);
    let _ = serde_json::from_slice::<troupe_cluster::MemberInfo>(data);
    let _ = serde_json::from_slice::<troupe_cluster::ShardOwner>(data);
}

/// What a node reads, it can send on: its own encoding reads back.
fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if let Ok(value) = troupe_cluster::envelope::decode::<T>(data) {
        let again = troupe_cluster::envelope::encode(&value);
        assert!(
            troupe_cluster::envelope::decode::<T>(&again).is_ok(),
            "an envelope the node read must read again once re-encoded"
        );
    }
}

/// A provider's streamed or whole answer; the first byte picks the dialect and the form.
pub fn provider_stream(data: &[u8]) {
    use troupe_inference::fuzzing::{Dialect, answer, stream};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let dialect = if which & 1 == 0 {
        Dialect::OpenAi
    } else {
        Dialect::Anthropic
    };
    if which & 2 == 0 {
        let _ = stream(dialect, rest);
    } else {
        let _ = answer(dialect, rest);
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn inputs(folder: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(folder) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn every_committed_seed_and_past_crash_reads_without_panicking() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut replayed = 0;
        for target in TARGETS {
            let seeds = inputs(&root.join("seeds").join(target.name));
            assert!(!seeds.is_empty(), "{} has no committed seeds", target.name);
            let regressions = inputs(&root.join("regressions").join(target.name));
            for path in seeds.iter().chain(&regressions) {
                let data = std::fs::read(path).unwrap();
                (target.run)(&data);
                replayed += 1;
            }
        }
        assert!(replayed >= TARGETS.len());
    }

    #[test]
    fn every_target_has_a_fuzzer_binary() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
        for target in TARGETS {
            let source = root.join(format!("{}.rs", target.name));
            let text = std::fs::read_to_string(&source).unwrap();
            assert!(
                text.contains(&format!("\"{}\"", target.name)),
                "{}",
                source.display()
            );
        }
    }
}
