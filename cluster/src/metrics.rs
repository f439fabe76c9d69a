//! Metric names of the cluster layer (the Prometheus registry lives in the binary).

/// Messages processed on a node other than the one they entered at.
pub const HOPS: &str = "troupe_cluster_hops_total";
/// Inbox messages delivered more than once (their first owner died or failed them).
pub const REDELIVERIES: &str = "troupe_cluster_redeliveries_total";
/// Messages JetStream dropped as repeats of an id it already stored.
pub const DEDUPES: &str = "troupe_cluster_dedupes_total";
/// Shards taken over from a node whose lease expired.
pub const FAILOVERS: &str = "troupe_cluster_failovers_total";
/// Shards handed over gracefully (rebalance or drain).
pub const HANDOVERS: &str = "troupe_cluster_handovers_total";
/// Shards this node owns now.
pub const SHARDS_OWNED: &str = "troupe_cluster_shards_owned";
/// Times this node's own lease expired before it could renew it.
pub const LEASES_LOST: &str = "troupe_cluster_leases_lost_total";
/// Cluster-wide singletons running on this node.
pub const SINGLETONS_RUNNING: &str = "troupe_cluster_singletons_running";
/// Live members this node sees, itself included.
pub const MEMBERS: &str = "troupe_cluster_members";
