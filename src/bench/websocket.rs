//! The WebSocket load: N connections (each its own sender, so its own session), opened
//! first and held idle (to measure memory per idle connection), then M messages each with
//! up to K in flight, optionally paced to a total rate.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Report, SessionOutcome, rss};
use crate::chat::connect;
use crate::cli::BenchArgs;

/// Connections opened at once while connecting.
const CONNECT_CONCURRENCY: usize = 256;
/// A session with no frame for this long gives up.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Messages one connection may have awaiting replies (the node's own limit per connection).
const MAX_AWAITING_REPLY: usize = 256;

/// The fields of a server frame the load reads (the rest is skipped, not parsed into a
/// tree: the load shares the machine with the node it measures).
#[derive(Deserialize)]
struct FrameHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    in_reply_to: Option<Cow<'a, str>>,
}

/// The frame that sends one message.
#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    conversation_id: &'a str,
    payload: &'a str,
}

/// A message sent and not yet answered.
struct Pending {
    sent: Instant,
    acked: bool,
}

pub(crate) async fn run(args: &BenchArgs, server_pid: Option<u32>) -> anyhow::Result<Report> {
    let rss_before_connect = server_pid.and_then(rss::resident_bytes);
    let connected = Arc::new(Barrier::new(args.sessions + 1));
    let go = Arc::new(Barrier::new(args.sessions + 1));
    let connect_slots = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let payload = "x".repeat(args.payload_bytes.max(1));
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.sessions as f64 / rate));
    let connect_started = Instant::now();
    let mut sessions = Vec::with_capacity(args.sessions);
    let run_id = rand::random::<u32>();
    for index in 0..args.sessions {
        let plan = SessionPlan {
            run_id,
            index,
            url: args.url.clone(),
            token: args.token.clone(),
            messages: args.messages,
            in_flight: args.in_flight,
            ingest: args.ingest,
            interval,
            payload: payload.clone(),
            sessions: args.sessions,
            conversations: args.conversations.max(1),
        };
        let (connected, go, slots) = (
            Arc::clone(&connected),
            Arc::clone(&go),
            Arc::clone(&connect_slots),
        );
        sessions.push(tokio::spawn(async move {
            plan.run(&connected, &go, &slots).await
        }));
    }
    connected.wait().await;
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_millis(500) + Duration::from_secs(args.hold_secs)).await;
    let rss_idle_connected = server_pid.and_then(rss::resident_bytes);
    let started = Instant::now();
    go.wait().await;
    let mut outcomes = Vec::with_capacity(args.sessions);
    for session in sessions {
        outcomes.push(session.await.unwrap_or_else(|error| SessionOutcome {
            errors: 1,
            first_error: Some(format!("session task failed: {error}")),
            ..SessionOutcome::default()
        }));
    }
    Ok(Report {
        outcomes,
        elapsed: started.elapsed(),
        connect_time,
        server_pid,
        rss_before_connect,
        rss_idle_connected,
        rss_after: server_pid.and_then(rss::resident_bytes),
    })
}

struct SessionPlan {
    /// Random per run: message ids are dedupe keys, and a rerun must not get old replies.
    run_id: u32,
    index: usize,
    url: String,
    token: Option<String>,
    messages: usize,
    in_flight: usize,
    ingest: bool,
    interval: Option<Duration>,
    payload: String,
    sessions: usize,
    conversations: usize,
}

impl SessionPlan {
    /// Whether one more message may go out, given those sent, those not acknowledged yet
    /// and those awaiting a reply. The window counts the first (`--ingest`) or the second.
    const fn may_send(&self, sent: usize, unacked: usize, awaiting: usize) -> bool {
        let window = if self.ingest { unacked } else { awaiting };
        sent < self.messages && window < self.in_flight && awaiting < MAX_AWAITING_REPLY
    }

    async fn run(self, connected: &Barrier, go: &Barrier, slots: &Semaphore) -> SessionOutcome {
        let socket = {
            let _slot = slots.acquire().await;
            connect(&self.url, self.token.as_deref()).await
        };
        connected.wait().await;
        go.wait().await;
        let mut socket = match socket {
            Ok(socket) => socket,
            Err(error) => {
                return SessionOutcome {
                    errors: self.messages as u64,
                    first_error: Some(format!("{error:#}")),
                    ..SessionOutcome::default()
                };
            }
        };
        let mut outcome = SessionOutcome::default();
        let hello = json!({"type": "hello", "sender_id": format!("bench-{}", self.index)});
        if socket.send(Message::text(hello.to_string())).await.is_err() {
            outcome.errors = self.messages as u64;
            return outcome;
        }
        // Spread the first sends over one interval so paced sessions do not move in lockstep.
        let offset = self.interval.map_or(Duration::ZERO, |interval| {
            interval.mul_f64(self.index as f64 / self.sessions as f64)
        });
        let went = Instant::now();
        let mut next_send = went + offset;
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let (mut sent, mut finished, mut unacked) = (0, 0, 0);
        while finished < self.messages {
            let may_send = self.may_send(sent, unacked, pending.len());
            tokio::select! {
                () = tokio::time::sleep_until(next_send), if may_send => {
                    // Every message the window allows now goes out in one write, as a busy
                    // client's would: the load should cost the shared cores little.
                    loop {
                        let id = format!("b{}-{}-{sent}", self.run_id, self.index);
                        let conversation = format!("bench-{}-c{}", self.index, sent % self.conversations);
                        let frame = MessageFrame { kind: "message", id: &id, conversation_id: &conversation, payload: &self.payload };
                        let frame = serde_json::to_string(&frame).expect("a message frame is json-encodable");
                        if socket.feed(Message::text(frame)).await.is_err() {
                            break;
                        }
                        pending.insert(id, Pending { sent: Instant::now(), acked: false });
                        sent += 1;
                        unacked += 1;
                        next_send = self.interval.map_or_else(Instant::now, |interval| next_send + interval);
                        if !self.may_send(sent, unacked, pending.len()) || next_send > Instant::now() {
                            break;
                        }
                    }
                    if socket.flush().await.is_err() {
                        break;
                    }
                }
                frame = tokio::time::timeout(SILENCE_LIMIT, socket.next()) => {
                    let Ok(Some(Ok(Message::Text(text)))) = frame else {
                        if matches!(frame, Ok(Some(Ok(_)))) { continue; }
                        break;
                    };
                    let Ok(frame) = serde_json::from_str::<FrameHead<'_>>(text.as_str()) else { continue };
                    match frame.kind.as_ref() {
                        "ack" => {
                            let Some(message) = frame.id.and_then(|id| pending.get_mut(id.as_ref())) else {
                                continue;
                            };
                            if !message.acked {
                                message.acked = true;
                                unacked -= 1;
                                outcome.ack_latencies_micros.push(message.sent.elapsed().as_micros() as u64);
                                outcome.last_ack_after = Some(went.elapsed());
                            }
                        }
                        kind @ ("reply" | "error") => {
                            let Some(message) = frame.in_reply_to.and_then(|id| pending.remove(id.as_ref())) else {
                                continue;
                            };
                            finished += 1;
                            if !message.acked {
                                unacked -= 1;
                            }
                            if kind == "reply" {
                                outcome.latencies_micros.push(message.sent.elapsed().as_micros() as u64);
                            } else {
                                outcome.errors += 1;
                                outcome.first_error.get_or_insert_with(|| text.to_string());
                            }
                        }
                        _ => {} // delta frames
                    }
                }
            }
        }
        let unanswered = (self.messages - finished) as u64;
        if unanswered > 0 {
            outcome.errors += unanswered;
            outcome
                .first_error
                .get_or_insert_with(|| format!("{unanswered} messages got no answer"));
        }
        let _ = socket.close(None).await;
        outcome
    }
}
