//! `troupe chat`: talks to a running node over its WebSocket, streaming replies to the
//! terminal. Interactive by default; `-m TEXT` sends one message and exits (status 1 if
//! the assistant answered with an error).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cli::ChatArgs;

/// Read buffer of the client's WebSocket (`troupe chat`, `troupe bench`).
const CLIENT_READ_BUFFER_BYTES: usize = 8 * 1024;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `http://host:port` (or `ws://…`) → `ws://host:port/ws`.
pub(crate) fn websocket_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let with_scheme = if let Some(rest) = trimmed.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        trimmed.to_owned()
    };
    if with_scheme.ends_with("/ws") {
        with_scheme
    } else {
        format!("{with_scheme}/ws")
    }
}

/// `ws://host:port/ws` (or `http://…`) → `http://host:port`.
fn http_url(url: &str) -> String {
    let base = websocket_url(url);
    let base = base.trim_end_matches("/ws");
    base.replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1)
}

pub(crate) async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Socket> {
    let mut request = websocket_url(url)
        .into_client_request()
        .context("the --url is not a valid address")?;
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    // tungstenite zero-fills its whole read buffer before every read: at its 128 KiB
    // default that was the load generator's largest single cost (frames here are small).
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER_BYTES);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .with_context(|| format!("cannot reach the node at {url}; is `troupe serve` running?"))?;
    Ok(socket)
}

/// A fresh id per message: ids are dedupe keys, so two runs must never reuse one.
fn message_id() -> String {
    format!("cli-{}", uuid::Uuid::new_v4().simple())
}

fn default_sender() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "me".into());
    format!("cli-{user}")
}

pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let mut socket = connect(&args.url, args.token.as_deref()).await?;
    let sender = args.sender.clone().unwrap_or_else(default_sender);
    socket
        .send(Message::text(
            json!({"type": "hello", "sender_id": sender}).to_string(),
        ))
        .await?;
    if let Some(notice) = fetch_notice(&args).await {
        eprintln!("note: {notice}");
    }
    if let Some(text) = &args.message {
        let ok = exchange(
            &mut socket,
            text,
            args.conversation.as_deref(),
            &message_id(),
        )
        .await?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    eprintln!("chatting as {sender}; an empty line or Ctrl-D ends the chat");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("you> ");
        let Some(line) = lines.next_line().await? else {
            break;
        };
        if line.trim().is_empty() {
            break;
        }
        exchange(
            &mut socket,
            &line,
            args.conversation.as_deref(),
            &message_id(),
        )
        .await?;
    }
    let _ = socket.close(None).await;
    Ok(ExitCode::SUCCESS)
}

async fn fetch_notice(args: &ChatArgs) -> Option<String> {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{}/api/v1/info", http_url(&args.url)));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let info: Value = request.send().await.ok()?.json().await.ok()?;
    info["notice"].as_str().map(str::to_owned)
}

/// Sends one message and prints the streamed reply; `Ok(false)` when the answer was an error.
async fn exchange(
    socket: &mut Socket,
    text: &str,
    conversation: Option<&str>,
    id: &str,
) -> anyhow::Result<bool> {
    let mut frame = json!({"type": "message", "id": id, "content_type": "text", "payload": text});
    if let Some(conversation) = conversation {
        frame["conversation_id"] = json!(conversation);
    }
    socket.send(Message::text(frame.to_string())).await?;
    let mut stdout = std::io::stdout();
    let mut streamed = false;
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Value = serde_json::from_str(text.as_str())?;
        match frame["type"].as_str() {
            Some("delta") if frame["in_reply_to"] == id => {
                if !streamed {
                    eprint!("assistant> ");
                    streamed = true;
                }
                write!(stdout, "{}", frame["payload"].as_str().unwrap_or_default())?;
                stdout.flush()?;
            }
            Some("reply") if frame["in_reply_to"] == id => {
                if !streamed {
                    eprint!("assistant> ");
                    write!(stdout, "{}", frame["payload"].as_str().unwrap_or_default())?;
                }
                writeln!(stdout)?;
                return Ok(true);
            }
            Some("error") => {
                let code = frame["code"].as_str().unwrap_or("error");
                eprintln!(
                    "\nerror ({code}): {}",
                    frame["message"].as_str().unwrap_or_default()
                );
                if frame["in_reply_to"] == id || frame["in_reply_to"].is_null() {
                    return Ok(false);
                }
            }
            _ => {}
        }
    }
    bail!("the node closed the connection")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_websocket_and_http_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:8787"),
            "ws://127.0.0.1:8787/ws"
        );
        assert_eq!(
            websocket_url("https://example.org/"),
            "wss://example.org/ws"
        );
        assert_eq!(websocket_url("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(http_url("ws://h:1/ws"), "http://h:1");
        assert_eq!(http_url("http://h:1"), "http://h:1");
    }
}
