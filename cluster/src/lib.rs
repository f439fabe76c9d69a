//! Many Troupe nodes over NATS. This first piece is [`JetStreamSnapshotStore`]: session
//! snapshots in a JetStream key-value bucket, through the same `SnapshotStore` trait (and
//! conformance suite) as the embedded local store, so a session can continue on any node.
//!
//! Membership, placement and the durable inbox come next (see the cluster issue); plugin
//! traits live in `troupe-actors`, this crate only implements them.

mod kv_store;

pub use kv_store::{ClusterError, JetStreamSnapshotStore};
