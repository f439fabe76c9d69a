//! A person's conversations on one platform, for the web app's sidebar.
//!
//! - `GET /api/v1/conversations?sender=&platform=&q=&limit=&offset=`: the sessions
//!   `platform:sender` and `platform:sender/…` (the conversations a sender owns, as
//!   [`super::callers`] has it), newest first, each with the first thing the person said,
//!   paged, and filtered by `q` over everything said in them.
//! - `DELETE /api/v1/conversations/{conversation_id}?platform=`: forgets one (its snapshot
//!   and journal are deleted).
//!
//! A sender's own token sees and deletes only its own conversations; the owner's token any
//! sender's but those with a token of their own. What is listed is what the store holds
//! (every answered turn is stored before its reply), so listing wakes no session.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use troupe_actors::SessionKey;
use troupe_actors::provider::Role;
use troupe_actors::snapshot::SessionSnapshot;

use super::AppState;
use super::callers::Caller;
use super::error::{ApiCode, ApiError};

/// Keys read from the store per step of a listing.
const SCAN_STEP: usize = 1024;
/// Most conversations in one page.
const MAX_PAGE: usize = 200;
/// Longest `first_message` shown, in characters.
const FIRST_MESSAGE_CHARS: usize = 120;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    sender: Option<String>,
    platform: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    platform: Option<String>,
}

/// One conversation as the sidebar shows it.
#[derive(Debug, Serialize)]
struct ConversationSummary {
    key: String,
    conversation_id: String,
    /// Unix seconds of the last change.
    updated_at: u64,
    /// The person's first message, first line, shortened.
    first_message: String,
    /// Entries the node keeps (its history window).
    messages: usize,
}

impl ConversationSummary {
    fn of(snapshot: &SessionSnapshot) -> Self {
        let first = snapshot
            .history
            .iter()
            .find(|entry| entry.role == Role::User)
            .map(|entry| entry.content.lines().next().unwrap_or_default().trim())
            .unwrap_or_default();
        Self {
            key: snapshot.key.to_string(),
            conversation_id: snapshot.key.conversation_id().to_owned(),
            updated_at: snapshot.updated_at,
            first_message: shortened(first),
            messages: snapshot.history.len(),
        }
    }
}

fn shortened(text: &str) -> String {
    match text.char_indices().nth(FIRST_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whether anything the person or the assistant said in it contains `query` (any case).
fn mentions(snapshot: &SessionSnapshot, query: &str) -> bool {
    snapshot
        .history
        .iter()
        .filter(|entry| matches!(entry.role, Role::User | Role::Assistant))
        .any(|entry| entry.content.to_lowercase().contains(query))
}

/// Whether `conversation` is one of `sender`'s: `sender` itself or `sender/…`.
fn belongs_to(conversation: &str, sender: &str) -> bool {
    conversation
        .strip_prefix(sender)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn forbidden(code: ApiCode, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ApiCode::InvalidQuery, message)
}

/// The sender whose conversations `caller` may see: its own for a sender's token, the one
/// named for the owner's (who may not see the conversations of a sender with a token).
fn sender_for(
    state: &AppState,
    caller: &Caller,
    asked: Option<String>,
) -> Result<String, ApiError> {
    match caller {
        Caller::Sender(own) => match asked {
            Some(asked) if asked != **own => Err(forbidden(
                ApiCode::SenderNotAllowed,
                format!("this token sees only the conversations of `{own}`"),
            )),
            _ => Ok(own.to_string()),
        },
        Caller::Owner => {
            let sender = asked.ok_or_else(|| bad_query("name the sender: ?sender=<id>"))?;
            state
                .settings
                .senders
                .check_owner_may_see(&sender)
                .map(|()| sender)
        }
    }
}

fn platform_of(asked: Option<String>) -> Result<String, ApiError> {
    let platform = asked.unwrap_or_else(|| "ws".to_owned());
    // A key with that platform must be valid: the same rule as every session key.
    SessionKey::new(&platform, "x")
        .map(|_| platform)
        .map_err(|error| bad_query(format!("platform: {error}")))
}

/// The snapshots of `sender`'s conversations on `platform`, as stored.
async fn conversations_of(
    state: &AppState,
    platform: &str,
    sender: &str,
) -> Result<Vec<SessionSnapshot>, ApiError> {
    let store = state.node.store();
    let storage = |error: troupe_actors::snapshot::StoreError| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiCode::StorageError,
            error.to_string(),
        )
    };
    let mut found = Vec::new();
    let mut after: Option<SessionKey> = None;
    loop {
        let keys = store
            .list(after.as_ref(), SCAN_STEP)
            .await
            .map_err(storage)?;
        for key in &keys {
            if key.platform() != platform || !belongs_to(key.conversation_id(), sender) {
                continue;
            }
            if let Some(snapshot) = store.load(key).await.map_err(storage)? {
                found.push(snapshot);
            }
        }
        if keys.len() < SCAN_STEP {
            return Ok(found);
        }
        after = keys.last().cloned();
    }
}

/// `GET /api/v1/conversations`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_query("use ?sender=&platform=&q=&limit=&offset=").into_response();
    };
    let listed = async {
        let sender = sender_for(&state, &caller, query.sender)?;
        let platform = platform_of(query.platform)?;
        let mut conversations = conversations_of(&state, &platform, &sender).await?;
        if let Some(search) = query.q.map(|q| q.trim().to_lowercase())
            && !search.is_empty()
        {
            conversations.retain(|snapshot| mentions(snapshot, &search));
        }
        conversations.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
        });
        let total = conversations.len();
        let offset = query.offset.unwrap_or(0);
        let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let page: Vec<ConversationSummary> = conversations
            .iter()
            .skip(offset)
            .take(limit)
            .map(ConversationSummary::of)
            .collect();
        let next_offset = (offset + page.len() < total).then_some(offset + page.len());
        Ok::<_, ApiError>(serde_json::json!({
            "conversations": page, "total": total, "next_offset": next_offset,
        }))
    };
    match listed.await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `DELETE /api/v1/conversations/{conversation_id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(conversation): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_query("use ?platform=").into_response();
    };
    let deleted = async {
        let platform = platform_of(query.platform)?;
        let owner = conversation
            .split_once('/')
            .map_or(conversation.as_str(), |(sender, _)| sender);
        sender_for(&state, &caller, Some(owner.to_owned()))?;
        let key = SessionKey::new(&platform, &conversation).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidSessionKey,
                error.to_string(),
            )
        })?;
        match state.ingress.reset(key.clone()).await {
            Ok(true) => Ok(key),
            Ok(false) => Err(ApiError::not_found(format!("no conversation {key}"))),
            Err(error) => Err(ApiError::from(error)),
        }
    };
    match deleted.await {
        Ok(key) => {
            Json(serde_json::json!({"key": key.to_string(), "deleted": true})).into_response()
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_owns_its_own_conversation_and_those_under_it_only() {
        assert!(belongs_to("ada", "ada"));
        assert!(belongs_to("ada/trip-2027", "ada"));
        assert!(!belongs_to("adam", "ada"));
        assert!(!belongs_to("ada-work", "ada"));
        assert!(!belongs_to("bob/ada", "ada"));
    }

    #[test]
    fn a_first_message_is_shortened_on_a_character_boundary() {
        let long = "é".repeat(FIRST_MESSAGE_CHARS + 5);
        let short = shortened(&long);
        assert_eq!(short.chars().count(), FIRST_MESSAGE_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(shortened("hello"), "hello");
    }
}
