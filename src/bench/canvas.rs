//! `troupe bench-canvas`: load on a Yjs server's rooms, in the y-websocket protocol
//! (Troupe's `/yjs/{room}`) or in Hocuspocus's (every message prefixed with the document's
//! name, after a token message), so that Troupe and the Yjs servers people use are measured
//! by one client:
//! - `fanout`: N clients in one room send small updates at a total `--rate`; reports how
//!   many updates a second reached every other client, and the fan-out latency (from the
//!   send to the receipt at each other client);
//! - `rooms`: N rooms with one client each, held open; reports the server's memory per room;
//! - `join`: one room holding a document of `--doc-bytes`, joined `--joins` times in turn;
//!   reports the join latency (connecting to holding the whole document).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, ReadTxn, StateVector, Text, Transact, Update};

use super::{print_latencies, rss};
use crate::cli::{CanvasBenchArgs, CanvasBenchMode, CanvasProtocol};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// y-sync message types, and Hocuspocus's additions.
const SYNC: u64 = 0;
const AUTH: u64 = 2;
const SYNC_REPLY: u64 = 4;
const STEP_2: u64 = 1;
const UPDATE: u64 = 2;
/// How long a client waits for what it expects before the run fails.
const PATIENCE: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: CanvasBenchArgs) -> anyhow::Result<()> {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-file limit: {error}");
    }
    match args.mode {
        CanvasBenchMode::Fanout => fanout(&args).await,
        CanvasBenchMode::Rooms => rooms(&args).await,
        CanvasBenchMode::Join => join(&args).await,
    }
}

/// One client's connection, speaking the chosen protocol.
struct Client {
    socket: Socket,
    protocol: CanvasProtocol,
    room: String,
}

impl Client {
    async fn connect(args: &CanvasBenchArgs, room: &str) -> anyhow::Result<Self> {
        let url = match args.protocol {
            CanvasProtocol::YWebsocket => format!("{}/{room}", args.url.trim_end_matches('/')),
            CanvasProtocol::Hocuspocus => args.url.clone(),
        };
        let (socket, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let mut client = Self {
            socket,
            protocol: args.protocol,
            room: room.to_owned(),
        };
        if client.protocol == CanvasProtocol::Hocuspocus {
            // The token message (empty token), then wait for `Authenticated`.
            let mut auth = vec![];
            write_var(&mut auth, AUTH);
            write_var(&mut auth, 0);
            write_var(&mut auth, 0);
            client.send(&auth).await?;
            client.expect(|kind, _| kind == AUTH).await?;
        }
        Ok(client)
    }

    /// Sends `body` (a y-sync message) with the protocol's prefix.
    async fn send(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let frame = framed(self.protocol, &self.room, body);
        self.socket.send(Message::binary(frame)).await?;
        Ok(())
    }

    /// Asks for the document (sync step 1 with an empty state vector) and waits for it.
    async fn sync(&mut self) -> anyhow::Result<Vec<u8>> {
        let ask =
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep1(StateVector::default()))
                .encode_v1();
        self.send(&ask).await?;
        self.expect(|kind, rest| {
            (kind == SYNC || kind == SYNC_REPLY) && rest.first() == Some(&(STEP_2 as u8))
        })
        .await
    }

    /// Reads until a message for which `wanted(type, rest)` holds; answers its rest.
    async fn expect(&mut self, wanted: impl Fn(u64, &[u8]) -> bool) -> anyhow::Result<Vec<u8>> {
        let read = async {
            while let Some(message) = self.socket.next().await {
                if let Message::Binary(data) = message?
                    && let Some((kind, rest)) = split(self.protocol, &data)
                    && wanted(kind, rest)
                {
                    return Ok(rest.to_vec());
                }
            }
            bail!("the server closed the connection")
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .context("the server did not answer in time")?
    }
}

/// `body` (a y-sync message) as the protocol frames it for `room`.
fn framed(protocol: CanvasProtocol, room: &str, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + room.len() + 2);
    if protocol == CanvasProtocol::Hocuspocus {
        write_var(&mut frame, room.len() as u64);
        frame.extend_from_slice(room.as_bytes());
    }
    frame.extend_from_slice(body);
    frame
}

/// A message's type and what follows it, past the protocol's prefix.
fn split(protocol: CanvasProtocol, data: &[u8]) -> Option<(u64, &[u8])> {
    let mut rest = data;
    if protocol == CanvasProtocol::Hocuspocus {
        let length = read_var(&mut rest)? as usize;
        rest = rest.get(length..)?;
    }
    let kind = read_var(&mut rest)?;
    Some((kind, rest))
}

/// The update inside a sync step 2 or update message (after its type).
fn update_of(rest: &[u8]) -> Option<&[u8]> {
    let mut rest = rest;
    let sub = read_var(&mut rest)?;
    if sub != STEP_2 && sub != UPDATE {
        return None;
    }
    let length = read_var(&mut rest)? as usize;
    rest.get(..length)
}

fn write_var(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_var(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A unique suffix, so that each run starts from empty rooms.
fn run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_micros() as u64 % 1_000_000_000)
}

/// Client `index`'s updates: each sets one small entry of the `items` map, so each adds one
/// to its client's clock (update n ends at clock n + 1).
fn updates_of(client: u64, count: usize, bytes: usize) -> Vec<Vec<u8>> {
    let doc = Doc::with_client_id(client);
    let items = doc.get_or_insert_map("items");
    let text = "x".repeat(bytes);
    (0..count)
        .map(|n| {
            let before = doc.transact().state_vector();
            items.insert(
                &mut doc.transact_mut(),
                format!("{client}-{n}"),
                text.clone(),
            );
            let update = doc.transact().encode_state_as_update_v1(&before);
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1()
        })
        .collect()
}

/// When each client's updates were sent, in µs since the start (0: not yet).
struct SendTimes {
    base_client: u64,
    sent: Vec<Vec<AtomicU64>>,
}

async fn fanout(args: &CanvasBenchArgs) -> anyhow::Result<()> {
    let clients = args.clients.max(2);
    let per_client = args.updates;
    let run = run_id();
    let room = format!("bench-{run}");
    let base_client = run * 1024;
    let times = Arc::new(SendTimes {
        base_client,
        sent: (0..clients)
            .map(|_| (0..per_client).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    });
    let barrier = Arc::new(Barrier::new(clients + 1));
    let interval = Duration::from_secs_f64(clients as f64 / args.rate);
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let mut client = Client::connect(args, &room).await?;
        client.sync().await?;
        let updates = updates_of(base_client + index as u64, per_client, args.update_bytes);
        let (times, barrier) = (Arc::clone(&times), Arc::clone(&barrier));
        let expected = (clients - 1) * per_client;
        tasks.push(tokio::spawn(async move {
            fanout_client(client, index, updates, interval, times, barrier, expected).await
        }));
    }
    barrier.wait().await;
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut last = Duration::ZERO;
    for task in tasks {
        let (histogram, finished) = task.await??;
        latencies.add(histogram)?;
        last = last.max(finished);
    }
    let total = clients * per_client;
    println!(
        "fan-out       {clients} clients, {total} updates of {} bytes offered at {:.0}/s",
        args.update_bytes, args.rate
    );
    println!(
        "delivered     {} deliveries; all updates at every client in {:.2} s = {:.0} updates/s",
        latencies.len(),
        last.as_secs_f64(),
        total as f64 / last.as_secs_f64().max(1e-9)
    );
    print_latencies("fan-out ms", &latencies);
    Ok(())
}

/// One fan-out client: sends its updates at its pace while it reads the others', until it
/// has them all. Answers its latencies and when it had everything (since the start).
async fn fanout_client(
    client: Client,
    index: usize,
    updates: Vec<Vec<u8>>,
    interval: Duration,
    times: Arc<SendTimes>,
    barrier: Arc<Barrier>,
    expected: usize,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let Client {
        socket,
        protocol,
        room,
    } = client;
    let (mut sink, mut stream) = socket.split();
    barrier.wait().await;
    let start = Instant::now();
    let sender_times = Arc::clone(&times);
    let sender = tokio::spawn(async move {
        // Clients start spread over one interval, so the load is even.
        let offset = interval.mul_f64(index as f64 / sender_times.sent.len() as f64);
        let mut next = start + offset;
        for (n, body) in updates.into_iter().enumerate() {
            tokio::time::sleep_until(next).await;
            next += interval;
            let frame = framed(protocol, &room, &body);
            let micros = (start.elapsed().as_micros() as u64).max(1);
            sender_times.sent[index][n].store(micros, Ordering::Relaxed);
            sink.send(Message::binary(frame)).await?;
        }
        anyhow::Ok(sink)
    });
    let mut tally = Deliveries::new(&times, index)?;
    while tally.received < expected {
        let message = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .with_context(|| {
                format!(
                    "updates stopped arriving: {} of {expected} here",
                    tally.received
                )
            })?
            .context("the server closed the connection")??;
        if let Message::Binary(data) = message
            && let Some((kind, rest)) = split(protocol, &data)
            && (kind == SYNC || kind == SYNC_REPLY)
            && let Some(update) = update_of(rest)
        {
            tally.record(update, start.elapsed(), &times)?;
        }
    }
    let finished = start.elapsed();
    let _sink = sender.await??;
    Ok((tally.latencies, finished))
}

/// What one client received of the others' updates (a merged frame may carry its own back).
struct Deliveries {
    own: usize,
    /// Which of each client's updates arrived (update n is its clock n).
    delivered: Vec<Vec<bool>>,
    latencies: Histogram<u64>,
    received: usize,
}

impl Deliveries {
    fn new(times: &SendTimes, own: usize) -> anyhow::Result<Self> {
        Ok(Self {
            own,
            delivered: times
                .sent
                .iter()
                .map(|sent| vec![false; sent.len()])
                .collect(),
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            received: 0,
        })
    }

    /// Counts the updates inside `update`, received `now` after the start.
    fn record(&mut self, update: &[u8], now: Duration, times: &SendTimes) -> anyhow::Result<()> {
        let now = now.as_micros() as u64;
        for (client, clocks) in Update::decode_v1(update)?.insertions(true).iter() {
            let Some(sender) = client.get().checked_sub(times.base_client) else {
                continue;
            };
            if sender as usize == self.own {
                continue;
            }
            let (Some(sent), Some(delivered)) = (
                times.sent.get(sender as usize),
                self.delivered.get_mut(sender as usize),
            ) else {
                continue;
            };
            for n in clocks
                .iter()
                .flat_map(Clone::clone)
                .map(|clock| clock as usize)
            {
                if n < sent.len() && !delivered[n] {
                    delivered[n] = true;
                    let at = sent[n].load(Ordering::Relaxed);
                    self.latencies
                        .saturating_record(now.saturating_sub(at).max(1));
                    self.received += 1;
                }
            }
        }
        Ok(())
    }
}

async fn rooms(args: &CanvasBenchArgs) -> anyhow::Result<()> {
    let pid = args.server_pid.or_else(|| rss::pid_listening_on(&args.url));
    let before = pid.and_then(rss::resident_bytes);
    let run = run_id();
    let update = updates_of(run * 1024, 1, args.update_bytes).remove(0);
    let mut held = Vec::with_capacity(args.clients);
    let started = Instant::now();
    for index in 0..args.clients {
        let mut client = Client::connect(args, &format!("bench-{run}-{index}")).await?;
        client.sync().await?;
        client.send(&update).await?;
        held.push(client);
    }
    let connected = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pid.and_then(rss::resident_bytes);
    println!(
        "rooms         {} rooms open, one client each, in {:.1} s",
        args.clients,
        connected.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (before, after) {
        let per_room = after.saturating_sub(before) as f64 / args.clients as f64;
        println!(
            "server RSS    {:.1} MiB before, {:.1} MiB with the rooms open: {:.2} KiB per room (its connection included)",
            before as f64 / 1_048_576.0,
            after as f64 / 1_048_576.0,
            per_room / 1024.0
        );
    } else {
        println!("server RSS    unknown (give --server-pid for a server on this machine)");
    }
    drop(held);
    Ok(())
}

async fn join(args: &CanvasBenchArgs) -> anyhow::Result<()> {
    let room = format!("bench-{}", run_id());
    let mut seeder = Client::connect(args, &room).await?;
    seeder.sync().await?;
    let doc = Doc::with_client_id(run_id() * 1024 + 1);
    let text = doc.get_or_insert_text("t");
    // Many small edits, as a document grows, not one large insert.
    let piece = "y".repeat(1024);
    for _ in 0..args.doc_bytes.div_ceil(piece.len()) {
        let mut transaction = doc.transact_mut();
        let end = text.len(&transaction);
        text.insert(&mut transaction, end, &piece);
    }
    let whole = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let bytes = whole.len();
    seeder
        .send(&yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(whole)).encode_v1())
        .await?;
    // The document is in the room once a fresh client receives all of it.
    loop {
        let mut probe = Client::connect(args, &room).await?;
        let got = probe.sync().await?;
        if update_of(&got).is_some_and(|update| update.len() >= bytes) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..args.joins {
        let began = Instant::now();
        let mut client = Client::connect(args, &room).await?;
        let got = client.sync().await?;
        latencies.saturating_record(began.elapsed().as_micros() as u64);
        anyhow::ensure!(
            update_of(&got).is_some_and(|update| update.len() >= bytes),
            "a join got less than the document"
        );
    }
    println!(
        "join          a document of {bytes} bytes, joined {} times in turn",
        args.joins
    );
    print_latencies("join ms", &latencies);
    Ok(())
}
