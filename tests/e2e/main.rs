//! End-to-end tests: the real `troupe` binary, started per test on a free port with its own
//! data dir, driven over real HTTP and WebSocket, with the testkit's OpenAI-compatible and
//! Anthropic test doubles as model providers.

mod bridge_conformance;
mod canvas;
mod canvas_assistant;
mod canvas_bench;
mod canvas_memory;
mod cli;
mod cluster;
mod cluster_bridges;
mod conversations;
mod discord;
mod disk_full;
mod embeddings;
mod hardening;
mod identity;
mod local_chat;
mod mcp;
mod memory;
mod models;
mod openai_facade;
mod ops;
mod persistence;
mod pictures;
mod providers;
mod python;
mod rest;
mod senders;
mod session_memory;
mod signed_webhook;
mod skills;
mod slack;
mod stop;
mod support;
mod telegram;
mod tracing;
mod usage;
mod voice_notes;
mod voice_satellite;
mod web_app;
mod web_conversations;
mod web_linked;
mod web_setup;
mod web_voice;
mod websocket;
mod whatsapp;
