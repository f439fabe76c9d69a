//! Test harnesses and test doubles shared by Troupe's tests:
//! - [`fake_llm`]: an OpenAI-compatible and Anthropic server speaking the real wire formats
//!   (streaming included), scriptable per request (429 with `Retry-After`, 5xx, hangs,
//!   tool calls, mid-stream errors), recording what it was asked;
//! - [`process`]: starts the real `troupe` binary on a free port with its own data dir,
//!   and stops it gracefully or with `kill -9`;
//! - [`nats`]: a real `nats-server` with JetStream per test (restartable in place);
//! - [`cluster`]: `ClusterSandbox`, NATS plus N real `troupe` nodes joined to it;
//! - [`proxy`]: a TCP proxy a test can cut, to partition one node from NATS;
//! - [`netns`]: test hosts in network namespaces, cut off and healed at the link;
//! - [`otlp`]: a real OTLP collector (`rotel-agent`) whose received spans a test reads;
//! - [`discord`]: a faithful test double of Discord (REST, Gateway, signed interactions);
//! - [`slack`]: a faithful test double of Slack (Web API, Socket Mode, Events API sender);
//! - [`telegram`]: a faithful test double of the Telegram Bot API;
//! - [`whatsapp`]: a faithful test double of the WhatsApp Cloud API (Graph API and webhooks);
//! - [`voice`]: real voice components: Piper's speech, `wyoming-piper`, a pocketsphinx
//!   Wyoming server and an unmodified `wyoming-satellite`.

pub mod cluster;
pub mod discord;
pub mod fake_llm;
pub mod nats;
pub mod netns;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod slack;
pub mod telegram;
pub mod voice;
pub mod whatsapp;

/// The Python venv `scripts/test-deps` installs test servers into: `TROUPE_TEST_VENV`, else
/// the repository's `.venv`.
pub fn test_venv() -> std::path::PathBuf {
    std::env::var("TROUPE_TEST_VENV").map_or_else(
        |_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
        std::path::PathBuf::from,
    )
}

/// A listener on a free loopback port, for a test double that must know its own address.
pub async fn loopback_listener() -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("bound address");
    (listener, address)
}

/// A loopback port that was free a moment ago, for a server the test starts as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Serves `router` on `listener` until the returned task is aborted.
pub fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

/// Reads `probe` every 20 ms until `done` holds for what it read or `limit` passes; answers
/// the last reading (the caller asserts on it, so a timeout fails with what was seen).
pub async fn poll_until<T>(
    limit: std::time::Duration,
    probe: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let started = std::time::Instant::now();
    loop {
        let reading = probe();
        if done(&reading) || started.elapsed() > limit {
            return reading;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
