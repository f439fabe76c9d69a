//! Every NATS name Troupe uses, in one place: subjects as functions, stream, consumer and
//! bucket names as constants. All subjects carry a version (`v1`, `v2`) so a future format
//! can run beside this one during an upgrade.

/// The inbox of builds before the inbox was split over several streams: one stream holding
/// every shard's subject ([`legacy_inbox`]). A node drains it when it exists.
pub const LEGACY_INBOX_STREAM: &str = "TROUPE_INBOX";
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

/// Long-term memory: one message per memory.
pub const MEMORY_STREAM: &str = "TROUPE_MEMORY";
/// The memory subjects' prefix: `troupe.v1.memory.<person as hex>.<memory id>`.
pub const MEMORY: &str = "troupe.v1.memory";
/// Token accounting: one message per turn and model, on its node's subject.
pub const USAGE_STREAM: &str = "TROUPE_USAGE";
/// The usage subjects' prefix: `troupe.v1.usage.<node as hex>`.
pub const USAGE: &str = "troupe.v1.usage";
/// The queue group of the nodes that serve a local model.
pub const MODELS_QUEUE_GROUP: &str = "troupe-models";

/// `text` as one subject token, whatever it holds: its bytes in lowercase hex.
pub fn hex_token(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// Where embedding requests for `model` go.
pub fn embed(model: &str) -> String {
    format!("troupe.v1.models.embed.{}", hex_token(model))
}

/// Where chat calls for `model` go.
pub fn chat(model: &str) -> String {
    format!("troupe.v1.models.chat.{}", hex_token(model))
}

/// Where inbound messages of `shard` are stored.
pub fn inbox(shard: u32) -> String {
    format!("troupe.v2.inbox.{shard}")
}

/// Where builds before the split stored inbound messages of `shard`.
pub fn legacy_inbox(shard: u32) -> String {
    format!("troupe.v1.inbox.{shard}")
}

/// Which of the `streams` inbox streams holds `shard`'s subject.
pub fn inbox_stream_of(shard: u32, streams: u32) -> u32 {
    shard % streams
}

/// The name of inbox stream `index`.
pub fn inbox_stream(index: u32) -> String {
    format!("TROUPE_INBOX_{index}")
}

/// The subjects of inbox stream `index` of `streams`, for a cluster of `shards` shards.
pub fn inbox_stream_subjects(index: u32, streams: u32, shards: u32) -> Vec<String> {
    (0..shards)
        .filter(|&shard| inbox_stream_of(shard, streams) == index)
        .map(inbox)
        .collect()
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
    }

    #[test]
    fn every_shard_subject_is_in_exactly_one_inbox_stream() {
        let (streams, shards) = (8, 64);
        for shard in 0..shards {
            let holders: Vec<u32> = (0..streams)
                .filter(|&index| {
                    inbox_stream_subjects(index, streams, shards).contains(&inbox(shard))
                })
                .collect();
            assert_eq!(holders, vec![inbox_stream_of(shard, streams)]);
        }
        assert_eq!(inbox_stream_subjects(7, 8, 64).len(), 8);
        assert_ne!(inbox(3), legacy_inbox(3));
        assert_ne!(inbox_stream(0), LEGACY_INBOX_STREAM);
    }
}
