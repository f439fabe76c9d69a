//! A faithful test double of the OpenAI Chat Completions API (`POST /v1/chat/completions`,
//! `GET /v1/models`) and the Anthropic Messages API (`POST /v1/messages`), following the
//! published request/response and server-sent-event formats of both.
//!
//! Each request takes the next [`FakeReply`] from the script; with an empty script it
//! answers `echo: <last user text>` instantly, streamed word by word when asked to stream.
//! Unscripted, a last user message `/tool NAME ARGUMENTS-JSON` is answered with a call to
//! that tool (OpenAI's format), and a last `tool` message with `tool said: <its content>`,
//! so load tests can drive skills through the real tool loop.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

mod audio;
mod embeddings;
mod rules;
use rules::{
    anthropic_images_valid, anthropic_tool_uses_answered, openai_content_parts_valid,
    openai_tool_messages_answered,
};

/// What the next request gets.
#[derive(Clone, Debug)]
pub enum FakeReply {
    /// Text, streamed in these pieces (or joined when not streaming).
    Text(Vec<String>),
    /// One tool call, its JSON arguments streamed in these pieces.
    ToolCall {
        id: String,
        name: String,
        argument_pieces: Vec<String>,
    },
    /// Several tool calls in one answer (parallel calls): `(id, name, arguments JSON)`.
    ToolCalls(Vec<(String, String, String)>),
    /// An HTTP error in the API's own error format.
    Status {
        status: u16,
        retry_after: Option<String>,
        message: String,
    },
    /// Accepts the request and never answers.
    Hang,
    /// Waits, then answers as the inner reply.
    Delayed(Duration, Box<FakeReply>),
    /// Streams these text pieces, then an error event (the connection stays well-formed).
    StreamError(Vec<String>),
    /// Streams these text pieces, then keeps the stream open (with SSE comments, as
    /// proxies send) until the client closes it; `open` counts such streams still open.
    StreamThenHang(Vec<String>, Arc<AtomicUsize>),
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<FakeReply>>,
    requests: Mutex<Vec<Recorded>>,
    /// When set, requests must carry it (`Authorization: Bearer` / `x-api-key`).
    api_key: Option<String>,
    /// How long an unscripted echo waits before answering (a model that takes its time).
    echo_delay: Mutex<Duration>,
    /// Whether requests are kept for [`FakeLlm::requests`]: not when it serves a benchmark
    /// or a soak, where they would fill the memory (a soak's hour held 24 GiB of them).
    forgetful: bool,
}

/// A running fake; stops when dropped.
pub struct FakeLlm {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    /// Starts on a free loopback port.
    pub async fn start(api_key: Option<&str>) -> FakeLlm {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), api_key).await
    }

    pub async fn start_on(address: SocketAddr, api_key: Option<&str>) -> FakeLlm {
        let shared = Arc::new(Shared {
            api_key: api_key.map(str::to_owned),
            ..Shared::default()
        });
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("bind the fake");
        let address = listener.local_addr().expect("bound address");
        let server = tokio::spawn(serve(listener, router(Arc::clone(&shared))));
        FakeLlm {
            address,
            shared,
            server,
        }
    }

    /// `base_url` for an `openai` provider.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// `base_url` for an `anthropic` provider.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = FakeReply>) {
        self.shared
            .script
            .lock()
            .expect("script lock")
            .extend(replies);
    }

    /// Makes every unscripted echo wait `delay` first.
    pub fn set_echo_delay(&self, delay: Duration) {
        *self.shared.echo_delay.lock().expect("delay lock") = delay;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests lock").clone()
    }
}

async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let _ = axum::serve(listener, router).await;
}

/// The fake's routes (also used by the `fake-llm` binary).
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/models", get(openai_models))
        .route("/v1/embeddings", post(embeddings::openai_embeddings))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/speech", post(audio::speech))
        .route("/v1/messages", post(anthropic_messages))
        .with_state(shared)
}

/// Serves the fake on `listener` until the process ends (for the `fake-llm` binary).
pub async fn serve_forever(listener: tokio::net::TcpListener) {
    let shared = Shared {
        forgetful: true,
        ..Shared::default()
    };
    serve(listener, router(Arc::new(shared))).await;
}

fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .iter()
        .rev()
        .find(|message| message["role"] == "user");
    match last.map(|message| &message["content"]) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// The unscripted tool loop: a call for `/tool NAME ARGUMENTS`, the result's echo after it.
fn tool_turn(body: &Value) -> Option<FakeReply> {
    let last = body["messages"].as_array()?.last()?;
    if last["role"] == "tool" {
        let content = last["content"].as_str().unwrap_or_default();
        return Some(FakeReply::Text(vec![format!("tool said: {content}")]));
    }
    let command = last_user_text(body);
    let (name, arguments) = command.strip_prefix("/tool ")?.split_once(' ')?;
    Some(FakeReply::ToolCall {
        id: format!("call-{}", body["messages"].as_array().map_or(0, Vec::len)),
        name: name.to_owned(),
        argument_pieces: vec![arguments.to_owned()],
    })
}

fn echo_pieces(body: &Value) -> Vec<String> {
    let text = format!("echo: {}", last_user_text(body));
    text.split_inclusive(' ').map(str::to_owned).collect()
}

impl Shared {
    fn record(&self, path: &str, headers: &HeaderMap, body: &Value) {
        if self.forgetful {
            return;
        }
        let recorded = Recorded {
            path: path.to_owned(),
            headers: headers.clone(),
            body: body.clone(),
        };
        self.requests.lock().expect("requests lock").push(recorded);
    }

    fn next_reply(&self, body: &Value) -> FakeReply {
        let scripted = self.script.lock().expect("script lock").pop_front();
        scripted.unwrap_or_else(|| {
            let echo = tool_turn(body).unwrap_or_else(|| FakeReply::Text(echo_pieces(body)));
            let delay = *self.echo_delay.lock().expect("delay lock");
            if delay.is_zero() {
                echo
            } else {
                FakeReply::Delayed(delay, Box::new(echo))
            }
        })
    }

    fn authorized(&self, headers: &HeaderMap, header: &str, prefix: &str) -> bool {
        let Some(expected) = &self.api_key else {
            return true;
        };
        let presented = headers.get(header).and_then(|value| value.to_str().ok());
        presented == Some(&format!("{prefix}{expected}"))
    }
}

fn sse(events: &[String]) -> Response {
    let body = events.concat();
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Counts one open stream until its body is dropped (the client went away).
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// These events, then a comment line every 50 ms for as long as the client reads: writing
/// is how the server learns that the client closed the stream.
fn sse_then_hang(events: Vec<String>, open: &Arc<AtomicUsize>) -> Response {
    use futures_util::StreamExt;
    open.fetch_add(1, Ordering::SeqCst);
    let guard = OpenStream(Arc::clone(open));
    let keepalive = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((": still thinking\n\n".to_owned(), ()))
    });
    let body = futures_util::stream::iter(events)
        .chain(keepalive)
        .map(move |event| {
            let _held = &guard;
            Ok::<_, std::convert::Infallible>(event)
        });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn error_response(status: u16, retry_after: Option<&str>, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(retry_after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", retry_after.parse().expect("header value"));
    }
    response
}

// ---------- OpenAI ----------

async fn openai_models(State(_shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": "fake-model", "object": "model", "created": 0, "owned_by": "troupe-testkit"}
    ]}))
    .into_response()
}

fn openai_error(status: u16, retry_after: Option<&str>, message: &str) -> Response {
    let error_type = if status == 429 {
        "rate_limit_exceeded"
    } else {
        "invalid_request_error"
    };
    error_response(
        status,
        retry_after,
        json!({"error": {"message": message, "type": error_type, "param": null, "code": null}}),
    )
}

async fn openai_chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            400,
            None,
            "We could not parse the JSON body of your request.",
        );
    };
    shared.record("/v1/chat/completions", &headers, &body);
    if !shared.authorized(&headers, "authorization", "Bearer ") {
        return openai_error(401, None, "Incorrect API key provided.");
    }
    if let Err(message) = openai_tool_messages_answered(&body) {
        return openai_error(400, None, &message);
    }
    if let Err(message) = openai_content_parts_valid(&body) {
        return openai_error(400, None, &message);
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"].as_str().unwrap_or("fake-model").to_owned();
    let reply = shared.next_reply(&body);
    let answer = OpenAiAnswer {
        stream,
        usage_chunk: stream && body["stream_options"]["include_usage"] == true,
        model: &model,
    };
    openai_answer(reply, &answer).await
}

/// How a Chat Completions request asked to be answered.
struct OpenAiAnswer<'a> {
    stream: bool,
    /// `stream_options.include_usage`: a last chunk, with no choices, carries the usage.
    usage_chunk: bool,
    model: &'a str,
}

impl OpenAiAnswer<'_> {
    /// The end of a streamed answer: the usage chunk when asked for, then `[DONE]`.
    fn done(&self, events: &mut Vec<String>, completion_tokens: usize) {
        if self.usage_chunk {
            let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                "model": self.model, "choices": [],
                "usage": openai_usage(self.model, completion_tokens)});
            events.push(format!("data: {chunk}\n\n"));
        }
        events.push("data: [DONE]\n\n".into());
    }
}

fn openai_tool_calls_answer(
    calls: &[(String, String, String)],
    stream: bool,
    model: &str,
) -> Response {
    if !stream {
        let wire: Vec<Value> = calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        return axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": wire}, "finish_reason": "tool_calls"}]
        }))
        .into_response();
    }
    let mut events = vec![openai_chunk(
        model,
        &json!({"role": "assistant", "content": null}),
        None,
    )];
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        events.push(openai_chunk(
            model,
            &json!({"tool_calls": [{"index": index, "id": id,
            "type": "function", "function": {"name": name, "arguments": ""}}]}),
            None,
        ));
        // The arguments arrive in two pieces, as real streams cut them anywhere.
        let middle = arguments
            .char_indices()
            .nth(arguments.chars().count() / 2)
            .map_or(0, |(at, _)| at);
        for piece in [&arguments[..middle], &arguments[middle..]] {
            events.push(openai_chunk(
                model,
                &json!({"tool_calls": [{"index": index,
                "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    events.push(openai_chunk(model, &json!({}), Some("tool_calls")));
    events.push("data: [DONE]\n\n".into());
    sse(&events)
}

fn openai_chunk(model: &str, delta: &Value, finish_reason: Option<&str>) -> String {
    let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]});
    format!("data: {chunk}\n\n")
}

async fn openai_answer(reply: FakeReply, answer: &OpenAiAnswer<'_>) -> Response {
    let (stream, model) = (answer.stream, answer.model);
    match reply {
        FakeReply::Delayed(delay, inner) => {
            tokio::time::sleep(delay).await;
            Box::pin(openai_answer(*inner, answer)).await
        }
        FakeReply::Hang => std::future::pending().await,
        FakeReply::Status { status, retry_after, message } => openai_error(status, retry_after.as_deref(), &message),
        FakeReply::Text(pieces) if stream => {
            let mut events = vec![openai_chunk(model, &json!({"role": "assistant", "content": ""}), None)];
            events.extend(pieces.iter().map(|piece| openai_chunk(model, &json!({"content": piece}), None)));
            events.push(openai_chunk(model, &json!({}), Some("stop")));
            answer.done(&mut events, pieces.len());
            sse(&events)
        }
        FakeReply::Text(pieces) => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat()},
                "finish_reason": "stop"}],
            "usage": openai_usage(model, pieces.len())
        }))
        .into_response(),
        FakeReply::ToolCall { id, name, argument_pieces } if stream => {
            let mut events = vec![openai_chunk(model, &json!({"role": "assistant", "content": null,
                "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}), None)];
            events.extend(argument_pieces.iter().map(|piece| {
                openai_chunk(model, &json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None)
            }));
            events.push(openai_chunk(model, &json!({}), Some("tool_calls")));
            answer.done(&mut events, argument_pieces.len());
            sse(&events)
        }
        FakeReply::ToolCall { id, name, argument_pieces } => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": argument_pieces.concat()}}]},
                "finish_reason": "tool_calls"}]
        }))
        .into_response(),
        FakeReply::ToolCalls(calls) => openai_tool_calls_answer(&calls, stream, model),
        FakeReply::StreamThenHang(pieces, open) => {
            let mut events = vec![openai_chunk(model, &json!({"role": "assistant", "content": ""}), None)];
            events.extend(pieces.iter().map(|piece| openai_chunk(model, &json!({"content": piece}), None)));
            sse_then_hang(events, &open)
        }
        FakeReply::StreamError(pieces) => {
            let mut events: Vec<String> =
                pieces.iter().map(|piece| openai_chunk(model, &json!({"content": piece}), None)).collect();
            events.push(format!("data: {}\n\n", json!({"error": {"message": "upstream overloaded", "type": "server_error"}})));
            sse(&events)
        }
    }
}

// ---------- Anthropic ----------

fn anthropic_error(status: u16, retry_after: Option<&str>, message: &str) -> Response {
    let error_type = match status {
        401 => "authentication_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    error_response(
        status,
        retry_after,
        json!({"type": "error", "error": {"type": error_type, "message": message}}),
    )
}

fn anthropic_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(400, None, "invalid JSON body");
    };
    shared.record("/v1/messages", &headers, &body);
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(400, None, "anthropic-version: header is required");
    }
    if !shared.authorized(&headers, "x-api-key", "") {
        return anthropic_error(401, None, "invalid x-api-key");
    }
    if body["max_tokens"].as_u64().is_none() {
        return anthropic_error(400, None, "max_tokens: Field required");
    }
    if let Err(message) = anthropic_tool_uses_answered(&body) {
        return anthropic_error(400, None, &message);
    }
    if let Err(message) = anthropic_images_valid(&body) {
        return anthropic_error(400, None, &message);
    }
    let stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"].as_str().unwrap_or("claude-fake").to_owned();
    let reply = shared.next_reply(&body);
    anthropic_answer(reply, stream, &model).await
}

fn anthropic_tool_calls_answer(
    calls: &[(String, String, String)],
    stream: bool,
    model: &str,
) -> Response {
    if !stream {
        let content: Vec<Value> = calls
            .iter()
            .map(|(id, name, arguments)| {
                let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            })
            .collect();
        return axum::Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use", "stop_sequence": null,
            "usage": anthropic_usage(model, 3)
        }))
        .into_response();
    }
    let mut events = vec![anthropic_message_start(model)];
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        events.push(anthropic_event("content_block_start", &json!({"type": "content_block_start",
            "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
        events.push(anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta",
            "index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}}),
        ));
        events.push(anthropic_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.extend(anthropic_message_end("tool_use", 3));
    sse(&events)
}

/// A model whose name ends in this reads most of its prompt from the provider's prompt
/// cache: its usage says so, in the fields each API defines for it.
pub const CACHED_MODEL_SUFFIX: &str = "-cached";

/// Prompt tokens of every answer; for a cached model, how many were read from the cache
/// and (Anthropic) written to it.
const PROMPT_TOKENS: u64 = 5;
const CACHE_READ_TOKENS: u64 = 40;
const CACHE_WRITE_TOKENS: u64 = 10;

/// Anthropic's `usage`: `input_tokens` leaves out the cached tokens, counted apart.
fn anthropic_usage(model: &str, output_tokens: usize) -> Value {
    let mut usage = json!({"input_tokens": PROMPT_TOKENS, "output_tokens": output_tokens});
    if model.ends_with(CACHED_MODEL_SUFFIX) {
        usage["cache_read_input_tokens"] = json!(CACHE_READ_TOKENS);
        usage["cache_creation_input_tokens"] = json!(CACHE_WRITE_TOKENS);
    }
    usage
}

/// OpenAI's `usage`: `prompt_tokens` includes the cached tokens, which
/// `prompt_tokens_details.cached_tokens` counts.
fn openai_usage(model: &str, completion_tokens: usize) -> Value {
    let cached = if model.ends_with(CACHED_MODEL_SUFFIX) {
        CACHE_READ_TOKENS
    } else {
        0
    };
    let prompt = PROMPT_TOKENS + cached;
    json!({"prompt_tokens": prompt, "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens as u64,
        "prompt_tokens_details": {"cached_tokens": cached}})
}

fn anthropic_message_start(model: &str) -> String {
    anthropic_event(
        "message_start",
        &json!({"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": null, "stop_sequence": null, "usage": anthropic_usage(model, 1)}}),
    )
}

fn anthropic_message_end(stop_reason: &str, output_tokens: usize) -> Vec<String> {
    vec![
        anthropic_event(
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}}),
        ),
        anthropic_event("message_stop", &json!({"type": "message_stop"})),
    ]
}

/// A streamed text answer up to its last piece: the message and its text block started,
/// and a delta per piece (what comes next says how the stream ends).
fn anthropic_text_opening(model: &str, pieces: &[String]) -> Vec<String> {
    let mut events = vec![
        anthropic_message_start(model),
        anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    events.extend(pieces.iter().map(|piece| {
        anthropic_event(
            "content_block_delta",
            &json!({
        "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        )
    }));
    events
}

async fn anthropic_answer(reply: FakeReply, stream: bool, model: &str) -> Response {
    match reply {
        FakeReply::Delayed(delay, inner) => {
            tokio::time::sleep(delay).await;
            Box::pin(anthropic_answer(*inner, stream, model)).await
        }
        FakeReply::Hang => std::future::pending().await,
        FakeReply::Status {
            status,
            retry_after,
            message,
        } => anthropic_error(status, retry_after.as_deref(), &message),
        FakeReply::Text(pieces) if stream => {
            let mut events = anthropic_text_opening(model, &pieces);
            // A ping may come anywhere in a stream; the API sends one early.
            events.insert(2, anthropic_event("ping", &json!({"type": "ping"})));
            events.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            events.extend(anthropic_message_end("end_turn", pieces.len()));
            sse(&events)
        }
        FakeReply::Text(pieces) => axum::Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": pieces.concat()}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": anthropic_usage(model, pieces.len())
        }))
        .into_response(),
        FakeReply::ToolCall {
            id,
            name,
            argument_pieces,
        } if stream => {
            let mut events = vec![
                anthropic_message_start(model),
                anthropic_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                ),
            ];
            events.extend(argument_pieces.iter().map(|piece| anthropic_event("content_block_delta", &json!({
                "type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}))));
            events.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            events.extend(anthropic_message_end("tool_use", 3));
            sse(&events)
        }
        FakeReply::ToolCall {
            id,
            name,
            argument_pieces,
        } => {
            let input: Value =
                serde_json::from_str(&argument_pieces.concat()).unwrap_or_else(|_| json!({}));
            axum::Json(json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": id, "name": name, "input": input}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": anthropic_usage(model, 3)
            }))
            .into_response()
        }
        FakeReply::ToolCalls(calls) => anthropic_tool_calls_answer(&calls, stream, model),
        FakeReply::StreamThenHang(pieces, open) => {
            sse_then_hang(anthropic_text_opening(model, &pieces), &open)
        }
        FakeReply::StreamError(pieces) => {
            let mut events = anthropic_text_opening(model, &pieces);
            events.push(anthropic_event(
                "error",
                &json!({"type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ));
            sse(&events)
        }
    }
}
