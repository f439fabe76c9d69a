//! `troupe bench-canvas`, the canvas benchmark's client, measures what it claims: against a
//! node and against Hocuspocus (npm, tests/yjs) every update reaches every other client,
//! and a joined document arrives whole. (Its numbers are recorded in docs/benchmarks.md,
//! never asserted here.)

use std::process::Command;

use troupe_testkit::process::TroupeProcess;

use crate::canvas::yjs_dir;
use crate::support::binary;

fn bench(args: &[&str]) -> String {
    let output = Command::new(binary())
        .arg("bench-canvas")
        .args(args)
        .output()
        .expect("troupe runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const FANOUT: [&str; 8] = [
    "--mode",
    "fanout",
    "--clients",
    "5",
    "--updates",
    "20",
    "--rate",
    "500",
];
const JOIN: [&str; 6] = ["--mode", "join", "--doc-bytes", "65536", "--joins", "5"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canvas_benchmark_counts_every_delivery_on_troupe_and_on_hocuspocus() {
    let node = TroupeProcess::start(
        binary(),
        "[[providers]]\nname = \"main\"\nkind = \"echo\"\n",
    )
    .await
    .expect("troupe starts");
    let url = format!("ws://{}/yjs", node.address);
    let (fanout, join) = tokio::task::spawn_blocking(move || {
        let mut fanout = vec!["--url", &url];
        fanout.extend(FANOUT);
        let mut join = vec!["--url", &url];
        join.extend(JOIN);
        (bench(&fanout), bench(&join))
    })
    .await
    .unwrap();
    assert!(fanout.contains("delivered     400 deliveries"), "{fanout}");
    assert!(join.contains("joined 5 times"), "{join}");

    let port = free_port();
    let mut hocuspocus = Command::new("node")
        .current_dir(yjs_dir())
        .args(["hocuspocus-server.mjs", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let url = format!("ws://127.0.0.1:{port}");
    let (fanout, join) = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::BufReader::new(hocuspocus.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.contains("listening"), "{line}");
        let mut fanout = vec!["--protocol", "hocuspocus", "--url", &url];
        fanout.extend(FANOUT);
        let mut join = vec!["--protocol", "hocuspocus", "--url", &url];
        join.extend(JOIN);
        let answers = (bench(&fanout), bench(&join));
        let _ = hocuspocus.kill();
        let _ = hocuspocus.wait();
        answers
    })
    .await
    .unwrap();
    assert!(fanout.contains("delivered     400 deliveries"), "{fanout}");
    assert!(join.contains("joined 5 times"), "{join}");
}
