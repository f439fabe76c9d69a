//! Closed rooms cost no memory: after 10,000 rooms have been opened, edited, closed and
//! passivated, the node's resident memory is within 5 MiB of where it started (the leak
//! Hocuspocus users complain about).
//!
//! "Where it started" is after a first round of 2,000 rooms (not counted) has been
//! visited and has passivated: the canvas store is open, and the allocator's caches have
//! grown to the load once. Rooms are then visited in rounds of 2,000, each left to
//! passivate before the next, and the node is given up to 60 s to hand the freed pages
//! back (jemalloc's decay takes about 30 s). What stays is bounded by the canvas store's
//! 2 MiB page cache, which fills as `canvas.redb` grows.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use troupe_testkit::process::TroupeProcess;

use crate::support::{binary, metric_value, resident_kib};

const ROOMS: usize = 10_000;
/// Rooms visited before the node is left to passivate them all.
const ROUND: usize = 2_000;
/// Rooms opened at once.
const AT_ONCE: usize = 32;

/// A metric's value from `/metrics` (0 when absent).
async fn metric(node: &TroupeProcess, name: &str) -> f64 {
    metric_value(node, name).await.unwrap_or(0.0)
}

/// Opens `room`, makes one small edit, and leaves.
async fn visit(address: std::net::SocketAddr, room: usize) {
    use yrs::updates::encoder::Encode;
    use yrs::{ReadTxn, Text, Transact};
    let url = format!("ws://{address}/yjs/room-{room}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let doc = yrs::Doc::with_client_id(room as u64 + 1);
    doc.get_or_insert_text("t")
        .insert(&mut doc.transact_mut(), 0, "a short note");
    let update = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    let frame = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1();
    socket.send(Message::binary(frame)).await.unwrap();
    socket.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_closed_rooms_leave_no_memory_behind() {
    let config =
        "[canvas]\nidle_passivate_secs = 1\n\n[[providers]]\nname = \"main\"\nkind = \"echo\"\n";
    let node = TroupeProcess::start(binary(), config)
        .await
        .expect("troupe starts");
    // A first round, not counted: the allocator's per-thread caches and arenas grow to
    // this load once (not per room), which is not what this test looks for. Its freed
    // pages are given jemalloc's decay time (about 30 s) to go back first.
    visit_rooms(&node, ROOMS..ROOMS + ROUND).await;
    let before = settled_resident_kib(&node, 0, std::time::Duration::from_secs(30)).await;

    for round in (0..ROOMS).step_by(ROUND) {
        visit_rooms(&node, round..round + ROUND).await;
    }
    let updates = metric(&node, "troupe_canvas_updates_total").await;
    assert!(
        updates >= (ROOMS + ROUND) as f64,
        "every edit was stored: {updates}"
    );
    let after = settled_resident_kib(
        &node,
        before + BOUND_KIB,
        std::time::Duration::from_secs(60),
    )
    .await;
    eprintln!("resident memory: {before} KiB at the start, {after} KiB after {ROOMS} rooms");
    assert!(
        after <= before + BOUND_KIB,
        "resident memory grew from {before} KiB to {after} KiB"
    );
}

/// How much the node may grow.
const BOUND_KIB: u64 = 5 * 1024;

/// The node's resident memory once it is at most `bound`, or after `limit`: the allocator
/// hands freed pages back to the system over a few seconds, not at once.
async fn settled_resident_kib(node: &TroupeProcess, bound: u64, limit: std::time::Duration) -> u64 {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let resident = resident_kib(node);
        if resident <= bound || std::time::Instant::now() >= deadline {
            return resident;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Visits the rooms numbered `rooms`, [`AT_ONCE`] at a time, then waits until every one of
/// them has passivated.
async fn visit_rooms(node: &TroupeProcess, rooms: std::ops::Range<usize>) {
    let mut next = rooms.start;
    while next < rooms.end {
        let batch: Vec<_> = (next..(next + AT_ONCE).min(rooms.end))
            .map(|room| tokio::spawn(visit(node.address, room)))
            .collect();
        for visit in batch {
            visit.await.unwrap();
        }
        next += AT_ONCE;
    }
    wait_until_passivated(node).await;
}

/// Waits (at most two minutes) until no room is open: every edit sent was handled.
async fn wait_until_passivated(node: &TroupeProcess) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while metric(node, "troupe_canvas_rooms_open").await > 0.0 {
        assert!(std::time::Instant::now() < deadline, "rooms stay open");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
