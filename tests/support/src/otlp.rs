//! A real OTLP collector per test: `rotel-agent` (PyPI `rotel`, installed by
//! `scripts/test-deps`) listening for OTLP/gRPC on a free loopback port, printing every span
//! it receives to its log, which [`OtlpReceiver::spans`] parses back.
//!
//! The binary comes from `TROUPE_ROTEL_AGENT`, else the test venv's copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running collector.
pub struct OtlpReceiver {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

/// One span as the collector received it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportedSpan {
    pub trace_id: String,
    /// Empty for a root span.
    pub parent_id: String,
    pub span_id: String,
    pub name: String,
    pub kind: String,
    /// The span's attributes, values as the collector prints them (`Str(x)` → `x`).
    pub attributes: BTreeMap<String, String>,
    /// Its resource's attributes (`service.name`, `service.instance.id`, …).
    pub resource: BTreeMap<String, String>,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TROUPE_ROTEL_AGENT") {
        return PathBuf::from(path);
    }
    let site = crate::test_venv().join("lib");
    std::fs::read_dir(&site)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/rotel/rotel-agent"))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("rotel-agent"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl OtlpReceiver {
    /// Starts the collector and waits until it listens.
    pub async fn start() -> Self {
        let log = tempfile::NamedTempFile::new().expect("a temp file");
        let port = free_port();
        let http_port = free_port();
        let child = Command::new(binary())
            .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http_port}"))
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("the log"))
            .stderr(log.reopen().expect("the log"))
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {} ({error}); run ./scripts/test-deps",
                    binary().display()
                )
            });
        let receiver = Self { child, port, log };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "rotel-agent did not start:\n{}",
                receiver.raw_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        receiver
    }

    /// The OTLP/gRPC endpoint to export to.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn raw_log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        parse_spans(&self.raw_log())
    }

    /// Waits until `done` holds for the spans received, and returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) || started.elapsed() > timeout {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl OtlpReceiver {
    /// Waits until a span of each of `names` came, and returns them by name (the first of
    /// each); panics, listing what came, when one is missing after `timeout`.
    pub async fn spans_named(
        &self,
        timeout: Duration,
        names: &[&str],
    ) -> BTreeMap<String, ExportedSpan> {
        let spans = self
            .wait_for(timeout, |spans| {
                names
                    .iter()
                    .all(|name| spans.iter().any(|span| span.name == *name))
            })
            .await;
        names
            .iter()
            .map(|name| {
                let span = spans
                    .iter()
                    .find(|span| span.name == *name)
                    .unwrap_or_else(|| panic!("a {name} span in {spans:?}"));
                ((*name).to_owned(), span.clone())
            })
            .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses the collector's detailed debug output: `ResourceSpans #n` blocks with
/// `Resource attributes:`, then `Span #k` blocks of `Key : value` lines and `-> k: V(v)`
/// attributes.
pub fn parse_spans(log: &str) -> Vec<ExportedSpan> {
    let mut spans = Vec::new();
    let mut resource = BTreeMap::new();
    let mut current: Option<ExportedSpan> = None;
    let mut in_resource = false;
    for line in log.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceSpans #") {
            spans.extend(current.take());
            resource.clear();
            in_resource = true;
        } else if trimmed.starts_with("Span #") {
            spans.extend(current.take());
            in_resource = false;
            current = Some(ExportedSpan {
                resource: resource.clone(),
                ..ExportedSpan::default()
            });
        } else if trimmed.starts_with("ScopeSpans #") {
            in_resource = false;
        } else if let Some(attribute) = trimmed.strip_prefix("-> ") {
            let Some((key, value)) = attribute.split_once(": ") else {
                continue;
            };
            let value = unwrap_value(value);
            match current.as_mut() {
                Some(span) => {
                    span.attributes.insert(key.to_owned(), value);
                }
                None if in_resource => {
                    resource.insert(key.to_owned(), value);
                }
                None => {}
            }
        } else if let (Some(span), Some((key, value))) = (current.as_mut(), trimmed.split_once(':'))
        {
            let value = value.trim().to_owned();
            match key.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_id = value,
                "ID" => span.span_id = value,
                "Name" => span.name = value,
                "Kind" => span.kind = value,
                _ => {}
            }
        }
    }
    spans.extend(current);
    spans
}

/// `Str(node-0)` → `node-0`; `Int(3)` → `3`.
fn unwrap_value(value: &str) -> String {
    match (value.find('('), value.ends_with(')')) {
        (Some(open), true) => value[open + 1..value.len() - 1].to_owned(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collectors_output_parses() {
        let log = "\
ResourceSpans #0
Resource attributes:
     -> service.name: Str(troupe)
     -> service.instance.id: Str(node-1)
ScopeSpans #0
InstrumentationScope troupe
Span #0
    Trace ID       : 4bf92f3577b34da6a3ce929d0e0e4736
    Parent ID      : 08de39d8de794387
    ID             : 331f44ab2236a819
    Name           : model_call
    Kind           : SPAN_KIND_CLIENT
Attributes:
     -> provider: Str(main)
Span #1
    Trace ID       : 4bf92f3577b34da6a3ce929d0e0e4736
    Parent ID      : 
    ID             : 08de39d8de794387
    Name           : session_turn
";
        let spans = parse_spans(log);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].name, "model_call");
        assert_eq!(spans[0].parent_id, "08de39d8de794387");
        assert_eq!(spans[0].kind, "SPAN_KIND_CLIENT");
        assert_eq!(spans[0].attributes["provider"], "main");
        assert_eq!(spans[0].resource["service.instance.id"], "node-1");
        assert_eq!(spans[1].parent_id, "");
        assert_eq!(spans[1].span_id, "08de39d8de794387");
    }
}
