//! Messaging-platform bridges, one folder per platform with its config, client, mapping and
//! tests. Each implements `troupe_actors::bridge::Bridge` (plugins never touch ractor) and
//! is built by [`registry::build`] from its `[[bridges]]` entry.

mod common;
pub mod config_error;
#[cfg(feature = "discord")]
pub mod discord;
pub mod registry;
pub mod secrets;
pub use troupe_actors::signing;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "telegram")]
pub mod telegram;
mod text;
#[cfg(feature = "webhook")]
pub mod webhook;
#[cfg(any(feature = "slack", feature = "discord"))]
mod websocket;
#[cfg(feature = "whatsapp")]
pub mod whatsapp;
