//! Every NATS name Troupe uses, in one place: subjects as functions, stream, consumer and
//! bucket names as constants. All subjects carry a version (`v1`) so a future format can
//! run beside this one during an upgrade.

/// The durable inbox: one subject per shard, all in this stream.
pub const INBOX_STREAM: &str = "TROUPE_INBOX";
/// Subjects of [`INBOX_STREAM`].
pub const INBOX_SUBJECTS: &str = "troupe.v1.inbox.>";
/// Node leases (membership): one key per node, expiring when not renewed.
pub const MEMBERS_BUCKET: &str = "troupe_members";
/// Shard ownership: one key per shard naming its owner.
pub const SHARDS_BUCKET: &str = "troupe_shards";
/// Cluster-wide singletons: one key per singleton naming the node that runs it.
pub const SINGLETONS_BUCKET: &str = "troupe_singletons";
/// Session snapshots.
pub const SESSIONS_BUCKET: &str = "troupe_sessions";
/// NATS header carrying the W3C trace context of a message.
pub const TRACEPARENT_HEADER: &str = troupe_actors::trace::TRACEPARENT_HEADER;

/// Where inbound messages of `shard` are stored.
pub fn inbox(shard: u32) -> String {
    format!("troupe.v1.inbox.{shard}")
}

/// The durable consumer that delivers `shard`'s messages to its owner.
pub fn shard_consumer(shard: u32) -> String {
    format!("shard-{shard}")
}

/// The key of `shard` in [`SHARDS_BUCKET`].
pub fn shard_key(shard: u32) -> String {
    format!("shard-{shard}")
}

/// Parses a [`shard_key`].
pub fn parse_shard_key(key: &str) -> Option<u32> {
    key.strip_prefix("shard-")?.parse().ok()
}

/// Where a node receives the events of turns it submitted (replies travel to the node that
/// holds the client's connection).
pub fn replies(node_id: &str) -> String {
    format!("troupe.v1.reply.{node_id}")
}

/// Requests to one node: a session's history, a reset.
pub fn node_rpc(node_id: &str) -> String {
    format!("troupe.v1.node.{node_id}.rpc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_round_trip() {
        assert_eq!(parse_shard_key(&shard_key(17)), Some(17));
        assert_eq!(parse_shard_key("node-1"), None);
        assert!(inbox(3).starts_with(INBOX_SUBJECTS.trim_end_matches('>')));
    }
}
