//! Many Troupe nodes over NATS, one assistant.
//!
//! - [`ClusterNode`]: joins a cluster (lease in JetStream KV), owns session shards
//!   (compare-and-set keys, rendezvous preference), hands them over on drain and takes a
//!   lost node's shards.
//! - [`ClusterIngress`](ingress::ClusterIngress): the durable inbox (JetStream streams with
//!   `Nats-Msg-Id` dedupe); replies travel back to the node that holds the client.
//! - Cluster-wide singletons ([`ClusterNode::run_singleton`]): a task that runs on exactly
//!   one node and moves when that node dies or drains.
//! - [`JetStreamMemoryStore`](memory::JetStreamMemoryStore): long-term memory in one
//!   JetStream stream, held per person by the nodes that use it and followed live.
//! - [`ClusterEmbedder`](models::ClusterEmbedder): a node without local models embeds with
//!   another node's model over NATS ([`models::serve_embedder`] serves one).
//! - [`ClusterChatProvider`](remote_chat::ClusterChatProvider): a node without a local chat
//!   model's file asks a node that has it ([`remote_chat::serve_chat_model`]), streaming.
//! - [`JetStreamSnapshotStore`]: session snapshots and their turn journal in JetStream KV,
//!   written with compare-and-set so a stale node can never overwrite newer history or
//!   append after it.
//!
//! Plugin traits live in `troupe-actors`; this crate implements them and never touches
//! ractor. `docs/architecture.md` explains placement, durability and failover.

pub mod config;
pub mod envelope;
mod inbox;
pub mod ingress;
mod journal_gate;
mod kv_journal;
mod kv_store;
pub mod membership;
pub mod memory;
pub mod metrics;
pub mod models;
mod node;
pub mod placement;
pub mod remote_chat;
mod shards;
mod singletons;
mod stream_read;
pub mod subjects;
pub mod uploads;
pub mod usage;
mod worker;

pub use config::{ClusterConfig, InvalidClusterConfig, InvalidNodeId, validate_node_id};
pub use kv_store::{ClusterError, JetStreamSnapshotStore};
pub use membership::{MemberInfo, MemberState, MemberView};
pub use node::{ClusterNode, ClusterOverview, connect};
pub use shards::ShardOwner;
pub use singletons::{SingletonTask, SingletonView};
