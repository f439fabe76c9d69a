//! Skills (tools the model may call): the built-in skills, HTTP skills running as separate
//! services, and MCP servers. Each implements `troupe_actors::skill::Skill`; the node wraps
//! every one in a `SkillActor`.

pub mod builtin;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod mcp;
pub mod setup;

pub use builtin::{BUILTIN_NAMES, BuiltinContext, build_builtin};
pub use setup::SkillSetupError;
