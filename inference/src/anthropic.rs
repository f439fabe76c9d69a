//! The Anthropic Messages API (`POST {base_url}/v1/messages`), streaming and not.
//! Streaming follows the published event sequence: `message_start`, then per content
//! block `content_block_start` / `content_block_delta` (`text_delta` or
//! `input_json_delta`) / `content_block_stop`, then `message_delta` (stop reason, usage)
//! and `message_stop`; `ping` is ignored and `error` ends the call.

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use troupe_actors::{
    ChatMessage, ChatRequest, Completion, DeltaSink, FinishReason, ModelProvider, ProviderError,
    ProviderErrorKind, ProviderInfo, Role, ToolCall, Usage,
};

use crate::http::{client, parse_event, read_json, send, sse_data, stream_error};

/// The API version this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct AnthropicProvider {
    info: ProviderInfo,
    endpoint: String,
    api_key: String,
    max_tokens: u32,
    stream: bool,
}

impl AnthropicProvider {
    pub fn new(
        name: &str,
        base_url: &str,
        model: &str,
        api_key: &str,
        max_tokens: u32,
        stream: bool,
    ) -> Self {
        Self {
            info: ProviderInfo {
                name: name.to_owned(),
                kind: "anthropic".into(),
                model: model.to_owned(),
            },
            endpoint: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            api_key: api_key.to_owned(),
            max_tokens,
            stream,
        }
    }

    /// The request body, borrowing every string from the request (no JSON tree between).
    fn body<'a>(&'a self, request: &'a ChatRequest, stream: bool) -> RequestBody<'a> {
        RequestBody {
            model: &self.info.model,
            max_tokens: self.max_tokens,
            messages: wire_messages(&request.messages),
            stream,
            system: request.system_prompt.as_deref(),
            tools: request
                .tools
                .iter()
                .map(|tool| WireTool {
                    name: &tool.name,
                    description: &tool.description,
                    input_schema: &tool.parameters,
                })
                .collect(),
        }
    }

    fn protocol_error(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::new(ProviderErrorKind::Protocol, &self.info.name, message)
    }
}

/// A Messages API request body.
#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

/// Plain text, or content blocks.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: ImageSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: Option<&'a str>,
        content: &'a str,
        is_error: bool,
    },
}

/// A picture given inline (`{"type": "base64", "media_type", "data"}`).
#[derive(Debug, Serialize)]
struct ImageSource<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    media_type: &'static str,
    data: &'a str,
}

/// The conversation in Anthropic's shape. The results of one round of tool calls go
/// together in one `user` message, right after the assistant's `tool_use` blocks, as the
/// API requires. An assistant message with no text and no calls (an answer the person
/// stopped before its first word) is left out: the API refuses empty content, and joins
/// the two `user` turns that are then next to each other.
fn wire_messages(messages: &[ChatMessage]) -> Vec<WireMessage<'_>> {
    let mut wire: Vec<WireMessage<'_>> = Vec::with_capacity(messages.len());
    for message in messages {
        if message.role == Role::Assistant
            && message.content.is_empty()
            && message.tool_calls.is_empty()
        {
            continue;
        }
        if message.role == Role::Tool
            && let Some(WireContent::Blocks(blocks)) = wire.last_mut().map(|last| &mut last.content)
            && blocks
                .iter()
                .all(|block| matches!(block, Block::ToolResult { .. }))
        {
            blocks.push(tool_result_block(message));
            continue;
        }
        wire.push(wire_message(message));
    }
    wire
}

/// A tool's result; an error result (`{"error": …}`) is flagged `is_error`.
fn tool_result_block(message: &ChatMessage) -> Block<'_> {
    let is_error = serde_json::from_str::<Value>(&message.content).is_ok_and(|value| {
        value
            .as_object()
            .is_some_and(|object| object.len() == 1 && object.contains_key("error"))
    });
    Block::ToolResult {
        tool_use_id: message.tool_call_id.as_deref(),
        content: &message.content,
        is_error,
    }
}

/// Anthropic has no `tool` role: a tool result is a `user` message with a `tool_result`
/// block, and an assistant's tool calls are `tool_use` blocks.
fn wire_message(message: &ChatMessage) -> WireMessage<'_> {
    let (role, content) = match message.role {
        Role::Tool => (
            "user",
            WireContent::Blocks(vec![tool_result_block(message)]),
        ),
        Role::Assistant if !message.tool_calls.is_empty() => {
            let text = (!message.content.is_empty()).then(|| Block::Text {
                text: &message.content,
            });
            let calls = message.tool_calls.iter().map(|call| Block::ToolUse {
                id: &call.id,
                name: &call.name,
                input: serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({})),
            });
            (
                "assistant",
                WireContent::Blocks(text.into_iter().chain(calls).collect()),
            )
        }
        Role::Assistant => ("assistant", WireContent::Text(&message.content)),
        Role::User | Role::System if !message.images.is_empty() => {
            // Pictures first, then the words about them, as Anthropic advises.
            let images = message.images.iter().map(|image| Block::Image {
                source: ImageSource {
                    kind: "base64",
                    media_type: image.media_type.mime(),
                    data: &image.base64,
                },
            });
            let text = (!message.content.is_empty()).then(|| Block::Text {
                text: &message.content,
            });
            ("user", WireContent::Blocks(images.chain(text).collect()))
        }
        Role::User | Role::System => ("user", WireContent::Text(&message.content)),
    };
    WireMessage { role, content }
}

fn stop_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("end_turn" | "stop_sequence") | None => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    }
}

pub(crate) fn parse_message(answer: &Value) -> Option<Completion> {
    let blocks = answer.get("content")?.as_array()?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: block["id"].as_str().unwrap_or_default().to_owned(),
                name: block["name"].as_str().unwrap_or_default().to_owned(),
                arguments: block["input"].to_string(),
            }),
            _ => {}
        }
    }
    Some(Completion {
        text,
        tool_calls,
        finish_reason: stop_reason(answer["stop_reason"].as_str()),
        usage: Some(usage_of(&answer["usage"])),
    })
}

/// Anthropic's `usage` object as [`Usage`]: its `input_tokens` leaves out the tokens read
/// from (`cache_read_input_tokens`) and written to (`cache_creation_input_tokens`) the
/// prompt cache, which `Usage::input_tokens` counts.
fn usage_of(usage: &Value) -> Usage {
    let count = |name: &str| usage[name].as_u64().unwrap_or(0);
    let (read, written) = (
        count("cache_read_input_tokens"),
        count("cache_creation_input_tokens"),
    );
    Usage {
        input_tokens: count("input_tokens")
            .saturating_add(read)
            .saturating_add(written),
        output_tokens: count("output_tokens"),
        cache_read_tokens: read,
        cache_write_tokens: written,
    }
}

/// Accumulates a streamed message event by event.
#[derive(Default)]
struct StreamState {
    text: String,
    /// Tool-use blocks by content block index: (id, name, partial JSON).
    tool_blocks: BTreeMap<u64, ToolCall>,
    stop_reason: Option<FinishReason>,
    usage: Usage,
    stopped: bool,
}

impl StreamState {
    /// Applies one event; `Err` for an `error` event.
    fn apply(
        &mut self,
        event: &Value,
        deltas: &DeltaSink,
        provider: &str,
    ) -> Result<(), ProviderError> {
        match event["type"].as_str().unwrap_or_default() {
            "message_start" => self.usage = usage_of(&event["message"]["usage"]),
            "content_block_start" => {
                let block = &event["content_block"];
                if block["type"] == "tool_use" {
                    self.tool_blocks.insert(
                        event["index"].as_u64().unwrap_or(0),
                        ToolCall {
                            id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            arguments: String::new(),
                        },
                    );
                }
            }
            "content_block_delta" => self.apply_delta(event, deltas),
            "message_delta" => {
                self.stop_reason = Some(stop_reason(event["delta"]["stop_reason"].as_str()));
                // The counts so far: output always, input and cache when they changed.
                let usage = &event["usage"];
                if let Some(output) = usage["output_tokens"].as_u64() {
                    self.usage.output_tokens = output;
                }
                if usage["input_tokens"].is_u64() {
                    let output = self.usage.output_tokens;
                    self.usage = Usage {
                        output_tokens: output,
                        ..usage_of(usage)
                    };
                }
            }
            "message_stop" => self.stopped = true,
            "error" => return Err(stream_error(provider, event)),
            _ => {} // ping, content_block_stop, and event types added later
        }
        Ok(())
    }

    fn apply_delta(&mut self, event: &Value, deltas: &DeltaSink) {
        let delta = &event["delta"];
        match delta["type"].as_str() {
            Some("text_delta") => {
                let text = delta["text"].as_str().unwrap_or_default();
                deltas.push(text);
                self.text.push_str(text);
            }
            Some("input_json_delta") => {
                let index = event["index"].as_u64().unwrap_or(0);
                if let Some(call) = self.tool_blocks.get_mut(&index) {
                    call.arguments
                        .push_str(delta["partial_json"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
    }

    fn finish(self) -> Completion {
        let tool_calls = self
            .tool_blocks
            .into_values()
            .map(|mut call| {
                if call.arguments.trim().is_empty() {
                    call.arguments = "{}".into();
                }
                call
            })
            .collect();
        Completion {
            text: self.text,
            tool_calls,
            finish_reason: self.stop_reason.unwrap_or(FinishReason::Stop),
            usage: Some(self.usage),
        }
    }
}

#[async_trait::async_trait]
impl ModelProvider for AnthropicProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        let stream = request.stream && self.stream;
        let http_request = client()
            .post(&self.endpoint)
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&self.body(request, stream));
        let response = send(&self.info.name, http_request).await?;
        if !stream {
            let answer = read_json(&self.info.name, response).await?;
            return parse_message(&answer)
                .ok_or_else(|| self.protocol_error("the answer has no content"));
        }
        read_stream(&self.info.name, sse_data(&self.info.name, response), deltas).await
    }
}

/// Reads a streamed message, event by event, to `message_stop`.
pub(crate) async fn read_stream(
    provider: &str,
    mut events: impl Stream<Item = Result<String, ProviderError>> + Unpin,
    deltas: &DeltaSink,
) -> Result<Completion, ProviderError> {
    let mut state = StreamState::default();
    while let Some(data) = events.next().await {
        let payload = parse_event(provider, &data?)?;
        state.apply(&payload, deltas, provider)?;
        if state.stopped {
            return Ok(state.finish());
        }
    }
    Err(ProviderError::new(
        ProviderErrorKind::Network,
        provider,
        "the stream ended before message_stop",
    ))
}

#[cfg(test)]
mod tests;
