//! Who may talk to the assistant through a bridge. Strangers never reach the model:
//! - direct messages: `pairing` (default: an unknown sender gets a one-time code that the
//!   owner approves with `troupe pair approve CODE`), `allowlist` (only `allow_from`), or
//!   `open` (anyone);
//! - groups: `mention` (default: only messages that mention or reply to the assistant),
//!   `all`, or `off`; the sender must still be paired or allowed, unless DMs are `open`;
//! - a per-sender rate limit, so one sender cannot flood the model.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::{BridgeInbound, ChatKind};
use crate::rate::TokenBucket;

const fn default_rate_limit_per_minute() -> u32 {
    20
}

/// How direct messages from unknown senders are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmPolicy {
    #[default]
    Pairing,
    Allowlist,
    Open,
}

/// Which group messages are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupPolicy {
    #[default]
    Mention,
    All,
    Off,
}

/// A bridge's access policy (the `dm_policy`, `group_policy`, `allow_from` and
/// `rate_limit_per_minute` keys of its `[[bridges]]` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    #[serde(default)]
    pub dm_policy: DmPolicy,
    #[serde(default)]
    pub group_policy: GroupPolicy,
    /// Sender ids on the platform that are always allowed (the owner, family…).
    #[serde(default)]
    pub allow_from: Vec<String>,
    /// Messages per sender per minute; 0: no limit.
    #[serde(default = "default_rate_limit_per_minute")]
    pub rate_limit_per_minute: u32,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            dm_policy: DmPolicy::default(),
            group_policy: GroupPolicy::default(),
            allow_from: Vec::new(),
            rate_limit_per_minute: default_rate_limit_per_minute(),
        }
    }
}

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It goes to the assistant.
    Admit,
    /// The sender gets a pairing code instead.
    Challenge,
    /// Dropped, for this reason (a metric label).
    Refuse(&'static str),
}

impl AccessPolicy {
    /// Decides for `inbound`; `known` says whether its sender was paired by the owner.
    pub fn decide(&self, inbound: &BridgeInbound, known: bool) -> Admission {
        let allowed = known
            || self.dm_policy == DmPolicy::Open
            || self
                .allow_from
                .iter()
                .any(|allowed| allowed == inbound.message.sender_id());
        match inbound.chat {
            ChatKind::Direct if allowed => Admission::Admit,
            ChatKind::Direct => match self.dm_policy {
                DmPolicy::Pairing => Admission::Challenge,
                DmPolicy::Allowlist | DmPolicy::Open => Admission::Refuse("not_allowed"),
            },
            ChatKind::Group => match self.group_policy {
                GroupPolicy::Off => Admission::Refuse("groups_off"),
                GroupPolicy::Mention if !inbound.addressed => Admission::Refuse("not_addressed"),
                GroupPolicy::Mention | GroupPolicy::All if allowed => Admission::Admit,
                GroupPolicy::Mention | GroupPolicy::All => Admission::Refuse("not_allowed"),
            },
        }
    }
}

/// A token bucket per sender: `per_minute` messages, refilled continuously.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: DashMap<String, TokenBucket>,
}

impl RateLimiter {
    /// Takes one token for `sender`; `false` when the sender is over the limit.
    pub fn allow(&self, sender: &str, per_minute: u32, now: Instant) -> bool {
        if per_minute == 0 {
            return true;
        }
        let capacity = f64::from(per_minute);
        self.buckets
            .entry(sender.to_owned())
            .or_insert_with(|| TokenBucket::full(capacity, capacity / 60.0, now))
            .take(now)
    }

    /// Drops the buckets of senders idle for `idle`, so the map stays small.
    pub fn forget_idle(&self, idle: Duration, now: Instant) {
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.last_asked()) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Destination;
    use crate::message::{ContentType, InboundMessage, MessageParts};

    fn inbound(sender: &str, chat: ChatKind, addressed: bool) -> BridgeInbound {
        BridgeInbound {
            message: InboundMessage::new(MessageParts {
                id: "m1".into(),
                platform: "telegram".into(),
                sender_id: sender.into(),
                conversation_id: sender.into(),
                content_type: ContentType::Text,
                payload: "hi".into(),
                timestamp: 0,
                reply_to: None,
                attachments: Vec::new(),
                metadata: std::collections::BTreeMap::new(),
            })
            .expect("a valid message"),
            destination: Destination::default(),
            chat,
            addressed,
            sender_name: String::new(),
        }
    }

    #[test]
    fn pairing_challenges_strangers_and_admits_known_senders() {
        let policy = AccessPolicy {
            allow_from: vec!["owner".into()],
            ..AccessPolicy::default()
        };
        let stranger = inbound("stranger", ChatKind::Direct, false);
        assert_eq!(policy.decide(&stranger, false), Admission::Challenge);
        assert_eq!(policy.decide(&stranger, true), Admission::Admit);
        let owner = inbound("owner", ChatKind::Direct, false);
        assert_eq!(policy.decide(&owner, false), Admission::Admit);
    }

    #[test]
    fn allowlist_and_open_direct_messages() {
        let allowlist = AccessPolicy {
            dm_policy: DmPolicy::Allowlist,
            allow_from: vec!["friend".into()],
            ..AccessPolicy::default()
        };
        assert_eq!(
            allowlist.decide(&inbound("stranger", ChatKind::Direct, false), false),
            Admission::Refuse("not_allowed")
        );
        assert_eq!(
            allowlist.decide(&inbound("friend", ChatKind::Direct, false), false),
            Admission::Admit
        );
        let open = AccessPolicy {
            dm_policy: DmPolicy::Open,
            ..AccessPolicy::default()
        };
        assert_eq!(
            open.decide(&inbound("anyone", ChatKind::Direct, false), false),
            Admission::Admit
        );
    }

    #[test]
    fn groups_answer_known_senders_only_when_addressed_by_default() {
        let policy = AccessPolicy::default();
        assert_eq!(
            policy.decide(&inbound("paired", ChatKind::Group, false), true),
            Admission::Refuse("not_addressed")
        );
        assert_eq!(
            policy.decide(&inbound("paired", ChatKind::Group, true), true),
            Admission::Admit
        );
        assert_eq!(
            policy.decide(&inbound("stranger", ChatKind::Group, true), false),
            Admission::Refuse("not_allowed"),
            "no pairing codes in groups"
        );
        let all = AccessPolicy {
            group_policy: GroupPolicy::All,
            ..AccessPolicy::default()
        };
        assert_eq!(
            all.decide(&inbound("paired", ChatKind::Group, false), true),
            Admission::Admit
        );
        let off = AccessPolicy {
            group_policy: GroupPolicy::Off,
            ..AccessPolicy::default()
        };
        assert_eq!(
            off.decide(&inbound("paired", ChatKind::Group, true), true),
            Admission::Refuse("groups_off")
        );
    }

    #[test]
    fn the_rate_limit_refills_over_time() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allow("a", 3, start));
        }
        assert!(!limiter.allow("a", 3, start));
        assert!(limiter.allow("b", 3, start), "per sender");
        assert!(limiter.allow("a", 3, start + Duration::from_secs(20)));
        assert!(!limiter.allow("a", 3, start + Duration::from_secs(20)));
        assert!(limiter.allow("a", 0, start), "0 means no limit");
        limiter.forget_idle(Duration::from_secs(60), start + Duration::from_secs(120));
        assert!(limiter.buckets.is_empty());
    }
}
