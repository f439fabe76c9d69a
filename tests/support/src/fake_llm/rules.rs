//! The request rules of the APIs the double stands in for, as their documentation states
//! them: a request that breaks one gets the API's own 400 answer.

use serde_json::Value;

/// The picture formats both APIs take.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

fn is_base64(data: &str) -> bool {
    use base64::Engine;
    !data.is_empty()
        && base64::engine::general_purpose::STANDARD
            .decode(data)
            .is_ok()
}

/// A content list's parts are `text` or `image_url`; an image's URL is `http(s)://…` or a
/// `data:` URL of a supported picture type in base64 (the Chat Completions API's vision
/// input).
pub(super) fn openai_content_parts_valid(body: &Value) -> Result<(), String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for (index, message) in messages.iter().enumerate() {
        let Some(parts) = message["content"].as_array() else {
            continue;
        };
        for part in parts {
            match part["type"].as_str() {
                Some("text") if part["text"].is_string() => {}
                Some("image_url") => {
                    let url = part["image_url"]["url"].as_str().unwrap_or_default();
                    let remote = url.starts_with("https://") || url.starts_with("http://");
                    let inline = url
                        .strip_prefix("data:")
                        .and_then(|rest| rest.split_once(";base64,"));
                    let valid = remote
                        || inline.is_some_and(|(mime, data)| {
                            IMAGE_TYPES.contains(&mime) && is_base64(data)
                        });
                    if !valid {
                        return Err(format!(
                            "Invalid image in messages[{index}]: you uploaded an unsupported image. Please make sure your image is valid."
                        ));
                    }
                }
                _ => return Err(format!("Invalid content part in messages[{index}]: {part}")),
            }
        }
    }
    Ok(())
}

/// An `image` block's source is base64 data of a supported type (the Messages API's
/// vision input).
pub(super) fn anthropic_images_valid(body: &Value) -> Result<(), String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for (index, message) in messages.iter().enumerate() {
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        for (position, block) in blocks.iter().enumerate() {
            if block["type"] != "image" {
                continue;
            }
            let source = &block["source"];
            let media_type = source["media_type"].as_str().unwrap_or_default();
            if source["type"] != "base64" || !IMAGE_TYPES.contains(&media_type) {
                return Err(format!(
                    "messages.{index}.content.{position}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                ));
            }
            if !is_base64(source["data"].as_str().unwrap_or_default()) {
                return Err(format!(
                    "messages.{index}.content.{position}.image.source.base64: invalid base64 data"
                ));
            }
        }
    }
    Ok(())
}

/// OpenAI's rule: an assistant message with `tool_calls` is followed by one `tool` message
/// per call id, and a `tool` message answers such a call.
pub(super) fn openai_tool_messages_answered(body: &Value) -> Result<(), String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let mut open: Vec<String> = Vec::new();
    for message in &messages {
        if message["role"] == "tool" {
            let id = message["tool_call_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !open.contains(&id) {
                return Err("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into());
            }
            open.retain(|open_id| *open_id != id);
            continue;
        }
        if !open.is_empty() {
            break;
        }
        open = message["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|call| call["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            open.join(", ")
        ))
    }
}

fn block_ids(message: &Value, kind: &str, field: &str) -> Vec<String> {
    message["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|block| block["type"] == kind)
                .filter_map(|block| block[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Anthropic's rule: the message after `tool_use` blocks is a `user` message holding a
/// `tool_result` for each of them, and every `tool_result` answers the message before.
pub(super) fn anthropic_tool_uses_answered(body: &Value) -> Result<(), String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages
        .first()
        .is_some_and(|first| first["role"] != "user")
    {
        return Err("messages: first message must use the \"user\" role".into());
    }
    for (index, message) in messages.iter().enumerate() {
        let asked = block_ids(message, "tool_use", "id");
        let next = messages.get(index + 1);
        let answered = next
            .map(|next| block_ids(next, "tool_result", "tool_use_id"))
            .unwrap_or_default();
        let missing: Vec<&String> = asked.iter().filter(|id| !answered.contains(id)).collect();
        if !missing.is_empty() && next.is_some() {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                index + 1,
                missing
                    .iter()
                    .map(|id| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let stray: Vec<&String> = answered.iter().filter(|id| !asked.contains(id)).collect();
        if !stray.is_empty() {
            return Err(format!(
                "messages.{}.content: unexpected `tool_use_id` found in `tool_result` blocks: {}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                index + 1,
                stray
                    .iter()
                    .map(|id| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}
