//! Messaging-platform bridges (Telegram, Slack, WhatsApp, Discord, signed webhooks…), one
//! folder per platform with its config, client, mapping and tests.
//!
//! Nothing here yet. Each bridge will turn platform events into
//! `troupe_actors::InboundMessage`s and deliver `troupe_actors::OutboundReply`s, implementing
//! the bridge trait that `troupe-actors` defines (plugins never touch ractor).
