//! Memory comes back after a burst of conversations: 1,000 sessions take 10,000 turns,
//! passivate, and the node's resident memory returns close to where it was idle. Also
//! that `/metrics` shows the memory gauges an operator watches.
//!
//! The bound here is generous (a debug build, a shared machine); `./scripts/bench memory`
//! gives the exact figures for the release build.

use std::time::{Duration, Instant};

use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, metric_value, resident_kib};

/// How far above its idle size the node may stay once the burst has passivated (a debug
/// build stayed 13.7 MiB above; a leak of 25 KiB per session would break the bound).
const BOUND_KIB: u64 = 24 * 1024;

async fn metric(node: &TroupeProcess, name: &str) -> Option<f64> {
    metric_value(node, name).await
}

/// `troupe bench` against the node: `sessions` connections, each spreading `messages`
/// over `conversations` conversations. Returns the replies it counted.
fn bench(node: &TroupeProcess, sessions: usize, messages: usize, conversations: usize) -> u64 {
    let output = std::process::Command::new(binary())
        .args(["bench", "--url", &format!("ws://{}/ws", node.address)])
        .args(["--sessions", &sessions.to_string()])
        .args(["--messages", &messages.to_string()])
        .args(["--conversations", &conversations.to_string()])
        .args(["--in-flight", "4"])
        .output()
        .expect("troupe bench runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["errors", "0"]),
        "{report}"
    );
    report
        .lines()
        .find_map(|line| {
            line.strip_prefix("replies")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("a replies line")
}

async fn wait_until_passivated(node: &TroupeProcess) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(node, "troupe_sessions_active").await != Some(0.0) {
        assert!(Instant::now() < deadline, "sessions stay in memory");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_leave_no_memory_behind_once_they_passivate() {
    let config =
        "[assistant]\nidle_passivate_secs = 1\n\n[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
    let node = TroupeProcess::start(binary(), config)
        .await
        .expect("troupe starts");
    // Idle, with the store open and every path of a turn taken once.
    let warm = tokio::task::block_in_place(|| bench(&node, 4, 8, 2));
    assert_eq!(warm, 32);
    wait_until_passivated(&node).await;
    let idle = resident_kib(&node);

    let turns = tokio::task::block_in_place(|| bench(&node, 200, 50, 5));
    assert_eq!(turns, 10_000);
    let peak = resident_kib(&node);
    wait_until_passivated(&node).await;
    assert_eq!(
        metric(&node, "troupe_sessions_passivated").await,
        Some(1000.0),
        "the warm-up used some of the same conversations"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = resident_kib(&node);
    while after > idle + BOUND_KIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = resident_kib(&node);
    }
    eprintln!("resident memory: idle {idle} KiB, peak {peak} KiB, after passivation {after} KiB");
    assert!(
        after <= idle + BOUND_KIB,
        "resident memory stayed at {after} KiB, idle was {idle} KiB"
    );

    let resident = metric(&node, "troupe_process_resident_bytes").await;
    assert!(resident.is_some_and(|bytes| bytes > 1e6), "{resident:?}");
    let allocated = metric(&node, "troupe_heap_allocated_bytes").await;
    assert!(allocated.is_some_and(|bytes| bytes > 0.0), "{allocated:?}");
    assert!(metric(&node, "troupe_heap_retained_bytes").await.is_some());
    assert_eq!(metric(&node, "troupe_heap_retained_high").await, Some(0.0));
    assert_eq!(
        metric(&node, "troupe_store_cache_limit_bytes{store=\"sessions\"}").await,
        Some(2.0 * 1024.0 * 1024.0)
    );
}
