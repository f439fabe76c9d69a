//! Many Troupe nodes over NATS: membership, session placement, the durable JetStream inbox,
//! and a `SnapshotStore` on JetStream KV (same conformance suite as the local store).
//!
//! Nothing here yet: a single node runs without NATS (the embedded default). This crate will
//! implement `troupe_actors::snapshot::SnapshotStore` and the cross-node transport; it owns
//! no plugin trait of its own (plugin traits live in `troupe-actors`).
