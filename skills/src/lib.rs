//! Skills (tools the model may call): the built-in skills, HTTP skills running as separate
//! services, and MCP servers.
//!
//! Nothing here yet. Model providers already parse and carry tool calls
//! (`troupe_actors::ToolCall`, `troupe_actors::ToolSpec`); the skill trait and the tool loop
//! in the session come with the skills work.
