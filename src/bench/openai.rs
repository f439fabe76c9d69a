//! The OpenAI-facade load: N users, each sending M chat completions (with `user` set, so
//! each is its own remembered session) one after another, as an OpenAI SDK would; or, with
//! `--embeddings K`, M `/v1/embeddings` requests of K texts each.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::{Report, SessionOutcome, rss};
use crate::cli::BenchArgs;

pub(crate) async fn run(args: &BenchArgs, server_pid: Option<u32>) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.sessions)
        .timeout(Duration::from_secs(120))
        .build()?;
    let path = if args.embeddings.is_some() {
        "/v1/embeddings"
    } else {
        "/v1/chat/completions"
    };
    let endpoint = format!("{}{path}", args.url.trim_end_matches('/'));
    let rss_before = server_pid.and_then(rss::resident_bytes);
    let go = Arc::new(Barrier::new(args.sessions + 1));
    let payload = "x".repeat(args.payload_bytes.max(1));
    let mut users = Vec::with_capacity(args.sessions);
    for index in 0..args.sessions {
        let (client, endpoint, go, payload) = (
            client.clone(),
            endpoint.clone(),
            Arc::clone(&go),
            payload.clone(),
        );
        let (token, messages, texts) = (args.token.clone(), args.messages, args.embeddings);
        users.push(tokio::spawn(async move {
            go.wait().await;
            let mut outcome = SessionOutcome::default();
            for turn in 0..messages {
                let body = match texts {
                    Some(count) => json!({"model": "local", "input": (0..count)
                        .map(|text| format!("{payload} {index} {turn} {text}"))
                        .collect::<Vec<_>>()}),
                    None => json!({"model": "troupe", "user": format!("bench-{index}"),
                        "messages": [{"role": "user", "content": format!("{payload} {turn}")}]}),
                };
                let mut request = client.post(&endpoint).json(&body);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let started = Instant::now();
                let answer = match request
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                {
                    Ok(response) => response.bytes().await,
                    Err(error) => Err(error),
                };
                match answer {
                    Ok(_) => outcome
                        .latencies_micros
                        .push(started.elapsed().as_micros() as u64),
                    Err(error) => {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert_with(|| error.to_string());
                    }
                }
            }
            outcome
        }));
    }
    let started = Instant::now();
    go.wait().await;
    let mut outcomes = Vec::with_capacity(args.sessions);
    for user in users {
        outcomes.push(user.await?);
    }
    Ok(Report {
        outcomes,
        elapsed: started.elapsed(),
        connect_time: Duration::ZERO,
        server_pid,
        rss_before_connect: None,
        rss_idle_connected: rss_before,
        rss_after: server_pid.and_then(rss::resident_bytes),
    })
}
