//! The heart of Troupe: the message model, the plugin traits every other crate implements
//! (`ModelProvider`, `SnapshotStore`), and the actors that wrap them: `Session`,
//! `SessionRegistry`, `ModelWorker` and the `NodeSupervisor` at the root of a node.
//!
//! Plugins never touch ractor: they implement a plain trait, and an actor here wraps them.

pub mod backlog;
pub mod bridge;
pub mod embedding;
pub mod failures;
pub mod group_commit;
pub mod ids;
pub mod inbox;
pub mod ingress;
pub mod local_model;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod model_worker;
pub mod node;
pub mod provider;
pub mod rate;
pub mod registry;
pub mod session;
pub mod signing;
pub mod skill;
pub mod snapshot;
pub mod stop;
pub mod storage;
pub mod supervisor;
pub mod testing;
pub mod trace;
pub mod turn;
pub mod turn_context;
pub mod uploads;
pub mod usage;
pub mod voice;

#[cfg(test)]
mod inbox_tests;
#[cfg(test)]
mod node_backlog_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod parser_properties;
#[cfg(test)]
mod session_journal_tests;
#[cfg(test)]
mod session_memory_tests;
#[cfg(test)]
mod session_replace_tests;
#[cfg(test)]
mod session_stop_tests;
#[cfg(test)]
mod session_usage_tests;
#[cfg(test)]
mod supervisor_tests;

pub use ids::SessionKey;
pub use ingress::{Ingress, Submission};
pub use message::{
    Attachment, Awaiting, ContentType, DraftDefaults, InboundDraft, InboundMessage, MessageError,
    MessageLimits, OutboundReply,
};
pub use provider::{
    ChatMessage, ChatRequest, Completion, DeltaSink, FinishReason, ImagePart, ImageType,
    ModelProvider, ProviderError, ProviderErrorKind, ProviderInfo, Role, ToolCall, ToolSpec, Usage,
};
pub use trace::TraceParent;
pub use turn::{ErrorCode, TurnError, TurnEvent, TurnEventReceiver, TurnEvents, turn_channel};
