//! OpenAI-compatible Chat Completions (`POST {base_url}/chat/completions`), streaming
//! (server-sent events, ending with `data: [DONE]`) and not. Works with OpenAI, Ollama's
//! `/v1`, vLLM, llama.cpp server and LM Studio. Tool calls are parsed and carried in both
//! modes (streamed tool calls arrive in pieces keyed by `index`).

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use troupe_actors::{
    ChatRequest, Completion, DeltaSink, FinishReason, ModelProvider, ProviderError,
    ProviderErrorKind, ProviderInfo, Role, ToolCall, ToolSpec, Usage,
};

use crate::http::{client, parse_event, read_json, send, sse_data, stream_error};

#[derive(Debug)]
pub struct OpenAiProvider {
    info: ProviderInfo,
    endpoint: String,
    api_key: Option<String>,
    max_tokens: Option<u32>,
    stream: bool,
}

impl OpenAiProvider {
    pub fn new(
        name: &str,
        base_url: &str,
        model: &str,
        api_key: Option<String>,
        max_tokens: Option<u32>,
        stream: bool,
    ) -> Self {
        Self {
            info: ProviderInfo {
                name: name.to_owned(),
                kind: "openai".into(),
                model: model.to_owned(),
            },
            endpoint: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            max_tokens,
            stream,
        }
    }

    /// The request body, borrowing every string from the request (no JSON tree between).
    fn body<'a>(&'a self, request: &'a ChatRequest, stream: bool) -> RequestBody<'a> {
        let system = request.system_prompt.as_deref().map(|prompt| WireMessage {
            role: "system",
            content: WireContent::Text(prompt),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
        RequestBody {
            model: &self.info.model,
            messages: system
                .into_iter()
                .chain(request.messages.iter().map(WireMessage::of))
                .collect(),
            stream,
            // Streamed answers report their usage in a last chunk only when asked.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: request.tools.iter().map(WireTool::of).collect(),
            max_tokens: self.max_tokens,
        }
    }

    fn protocol_error(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::new(ProviderErrorKind::Protocol, &self.info.name, message)
    }
}

/// A Chat Completions request body.
#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

/// `stream_options` of a streamed request.
#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    /// Only on a `tool` message (where a missing id is sent as `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Option<&'a str>>,
}

impl<'a> WireMessage<'a> {
    fn of(message: &'a troupe_actors::ChatMessage) -> Self {
        Self {
            role: message.role.as_str(),
            content: WireContent::of(message),
            tool_calls: message.tool_calls.iter().map(WireCall::of).collect(),
            tool_call_id: (message.role == Role::Tool).then_some(message.tool_call_id.as_deref()),
        }
    }
}

/// A message's content: its text, or with pictures a list of parts (the text first, then
/// each picture as a `data:` URL), as the Chat Completions API takes them.
#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<WirePart<'a>>),
}

impl<'a> WireContent<'a> {
    fn of(message: &'a troupe_actors::ChatMessage) -> Self {
        if message.images.is_empty() {
            return Self::Text(&message.content);
        }
        let text = (!message.content.is_empty()).then(|| WirePart::Text {
            text: &message.content,
        });
        let images = message.images.iter().map(|image| WirePart::ImageUrl {
            image_url: WireImageUrl {
                url: format!("data:{};base64,{}", image.media_type.mime(), image.base64),
            },
        });
        Self::Parts(text.into_iter().chain(images).collect())
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: WireImageUrl },
}

#[derive(Serialize)]
struct WireImageUrl {
    url: String,
}

#[derive(Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

impl<'a> WireCall<'a> {
    fn of(call: &'a ToolCall) -> Self {
        Self {
            id: &call.id,
            kind: "function",
            function: WireFunctionCall {
                name: &call.name,
                arguments: &call.arguments,
            },
        }
    }
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

impl<'a> WireTool<'a> {
    fn of(tool: &'a ToolSpec) -> Self {
        Self {
            kind: "function",
            function: WireFunction {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
            },
        }
    }
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("stop") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    }
}

fn usage(value: &Value) -> Option<Usage> {
    let usage = value.get("usage").filter(|usage| usage.is_object())?;
    Some(Usage {
        input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        // Part of `prompt_tokens`; OpenAI charges no extra for writing its cache.
        cache_read_tokens: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        cache_write_tokens: 0,
    })
}

/// Parses a complete (non-streamed) answer.
pub(crate) fn parse_completion(answer: &Value) -> Option<Completion> {
    let choice = answer.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|call| ToolCall {
                    id: call["id"].as_str().unwrap_or_default().to_owned(),
                    name: call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    arguments: call["function"]["arguments"]
                        .as_str()
                        .unwrap_or("{}")
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Completion {
        text: message["content"].as_str().unwrap_or_default().to_owned(),
        tool_calls,
        finish_reason: finish_reason(choice["finish_reason"].as_str()),
        usage: usage(answer),
    })
}

/// Accumulates a streamed answer chunk by chunk.
#[derive(Default)]
struct StreamState {
    text: String,
    /// Tool calls by their stream `index`.
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamState {
    fn apply(&mut self, chunk: &Value, deltas: &DeltaSink) {
        if let Some(usage) = usage(chunk) {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk.get("choices").and_then(|choices| choices.get(0)) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str() {
            deltas.push(text);
            self.text.push_str(text);
        }
        for piece in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = piece["index"].as_u64().unwrap_or(0);
            let call = self.tool_calls.entry(index).or_insert_with(|| ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
            if let Some(id) = piece["id"].as_str() {
                call.id = id.to_owned();
            }
            if let Some(name) = piece["function"]["name"].as_str() {
                call.name.push_str(name);
            }
            if let Some(arguments) = piece["function"]["arguments"].as_str() {
                call.arguments.push_str(arguments);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(finish_reason(Some(reason)));
        }
    }

    fn finish(self) -> Completion {
        Completion {
            text: self.text,
            tool_calls: self.tool_calls.into_values().collect(),
            finish_reason: self.finish_reason.unwrap_or(FinishReason::Stop),
            usage: self.usage,
        }
    }
}

#[async_trait::async_trait]
impl ModelProvider for OpenAiProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        deltas: &DeltaSink,
    ) -> Result<Completion, ProviderError> {
        let stream = request.stream && self.stream;
        let mut http_request = client()
            .post(&self.endpoint)
            .json(&self.body(request, stream));
        if let Some(api_key) = &self.api_key {
            http_request = http_request.bearer_auth(api_key);
        }
        let response = send(&self.info.name, http_request).await?;
        if !stream {
            let answer = read_json(&self.info.name, response).await?;
            return parse_completion(&answer)
                .ok_or_else(|| self.protocol_error("the answer has no choices[0].message"));
        }
        read_stream(&self.info.name, sse_data(&self.info.name, response), deltas).await
    }
}

/// Reads a streamed answer, event by event, to its end.
pub(crate) async fn read_stream(
    provider: &str,
    mut events: impl Stream<Item = Result<String, ProviderError>> + Unpin,
    deltas: &DeltaSink,
) -> Result<Completion, ProviderError> {
    let mut state = StreamState::default();
    while let Some(data) = events.next().await {
        let data = data?;
        if data.trim() == "[DONE]" {
            return Ok(state.finish());
        }
        let chunk = parse_event(provider, &data)?;
        if chunk.get("error").is_some() {
            return Err(stream_error(provider, &chunk));
        }
        state.apply(&chunk, deltas);
    }
    if state.finish_reason.is_some() {
        return Ok(state.finish()); // some servers close without `[DONE]`
    }
    Err(ProviderError::new(
        ProviderErrorKind::Network,
        provider,
        "the stream ended before the answer did",
    ))
}

#[cfg(test)]
mod tests;
