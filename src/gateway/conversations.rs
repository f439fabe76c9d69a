//! A person's conversations on one platform, for the web app's sidebar.
//!
//! - `GET /api/v1/conversations?sender=&platform=&q=&limit=&offset=`: the sessions
//!   `platform:sender` and `platform:sender/…` (the conversations a sender owns, as
//!   [`super::callers`] has it), newest first, each with the first thing the person said,
//!   paged, and filtered by `q` over everything said in them.
//! - `GET /api/v1/conversations/{conversation_id}?platform=`: its history (the sessions
//!   API's view), for a sender's own token too.
//! - `DELETE /api/v1/conversations/{conversation_id}?platform=`: forgets one (its snapshot,
//!   journal and title are deleted).
//! - `POST /api/v1/conversations/{conversation_id}/title` and `PATCH …` `{"title"}`: the
//!   assistant titles it, the person renames it ([`super::titles`]).
//! - `POST /api/v1/conversations/{conversation_id}/stop` `{"message_id"}`: stops
//!   generating the answer to that message.
//!
//! A linked sender's main conversation is its person's (`person:<name>`, see
//! [`super::linked`]): listed under the sender's id, with the person's other accounts.
//!
//! A sender's own token sees and deletes only its own conversations; the owner's token any
//! sender's but those with a token of their own. What is listed is what the store holds
//! (every answered turn is stored before its reply), so listing wakes no session.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

use troupe_actors::bridge::identity::PERSON_PLATFORM;
use troupe_actors::provider::Role;
use troupe_actors::snapshot::SessionSnapshot;
use troupe_actors::{DeltaSink, SessionKey};

use super::AppState;
use super::body::admin_json_body;
use super::callers::Caller;
use super::error::{ApiCode, ApiError};
use super::linked;
use super::titles::{ConversationTitles, Title, title_of, title_request};

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
pub(crate) struct PlatformQuery {
    platform: Option<String>,
}

/// One conversation as the sidebar shows it.
#[derive(Debug, Serialize)]
struct ConversationSummary {
    key: String,
    /// How the page names it: a sender's main conversation keeps the sender's id when it is
    /// kept as its linked person's (`key` is then `person:…`).
    conversation_id: String,
    /// The other accounts of the person it is shared with (absent when it is not shared).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    shared_with: Vec<String>,
    /// Unix seconds of the last change.
    updated_at: u64,
    /// The person's first message, first line, shortened.
    first_message: String,
    /// Entries the node keeps (its history window).
    messages: usize,
    /// What the assistant or the person called it, if anyone has yet.
    title: Option<String>,
}

impl ConversationSummary {
    fn of(found: &Found) -> Self {
        let Found {
            snapshot,
            title,
            conversation_id,
            shared_with,
        } = found;
        let first = snapshot
            .history
            .iter()
            .find(|entry| entry.role == Role::User)
            .map(|entry| entry.content.lines().next().unwrap_or_default().trim())
            .unwrap_or_default();
        Self {
            key: snapshot.key.to_string(),
            conversation_id: conversation_id.clone(),
            shared_with: shared_with.clone(),
            updated_at: snapshot.updated_at,
            first_message: shortened(first),
            messages: snapshot.history.len(),
            title: title.as_ref().map(|title| title.as_str().to_owned()),
        }
    }
}

fn shortened(text: &str) -> String {
    match text.char_indices().nth(FIRST_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whether its title or anything the person or the assistant said in it contains `query`
/// (any case).
fn mentions(snapshot: &SessionSnapshot, title: Option<&Title>, query: &str) -> bool {
    title.is_some_and(|title| title.as_str().to_lowercase().contains(query))
        || snapshot
            .history
            .iter()
            .filter(|entry| matches!(entry.role, Role::User | Role::Assistant))
            .any(|entry| entry.content.to_lowercase().contains(query))
}

fn storage_error(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ApiCode::StorageError,
        error.to_string(),
    )
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

/// One of a sender's conversations, as stored.
struct Found {
    snapshot: SessionSnapshot,
    title: Option<Title>,
    /// How the sender names it (see [`ConversationSummary`]).
    conversation_id: String,
    shared_with: Vec<String>,
}

/// Where each of `sender`'s conversations on `platform` is kept: `platform:sender` and
/// `platform:sender/…`, except that the main one is its linked person's session.
struct SenderConversations<'a> {
    platform: &'a str,
    sender: &'a str,
    person: Option<(SessionKey, Vec<String>)>,
}

impl<'a> SenderConversations<'a> {
    fn new(state: &AppState, platform: &'a str, sender: &'a str) -> Result<Self, ApiError> {
        let person = match linked::linked_person(state, platform, sender) {
            Some(person) => {
                let key = SessionKey::new(PERSON_PLATFORM, &person).map_err(storage_error)?;
                let own = format!("{platform}:{sender}");
                let mut others = state.bridges.store().linked_members(&person);
                others.retain(|member| *member != own);
                Some((key, others))
            }
            None => None,
        };
        Ok(Self {
            platform,
            sender,
            person,
        })
    }

    /// How the sender names the conversation kept at `key`, and who else shares it; `None`
    /// when it is not one of theirs.
    fn named(&self, key: &SessionKey) -> Option<(String, Vec<String>)> {
        if let Some((person, others)) = &self.person {
            if key == person {
                return Some((self.sender.to_owned(), others.clone()));
            }
            if key.platform() == self.platform && key.conversation_id() == self.sender {
                // What was said here before the link: the main conversation is the
                // person's now (the sessions API still shows this one).
                return None;
            }
        }
        (key.platform() == self.platform && belongs_to(key.conversation_id(), self.sender))
            .then(|| (key.conversation_id().to_owned(), Vec::new()))
    }
}

/// `sender`'s conversations on `platform`, as stored, with their titles.
async fn conversations_of(
    state: &AppState,
    platform: &str,
    sender: &str,
) -> Result<Vec<Found>, ApiError> {
    let store = state.node.store();
    let titles = ConversationTitles::new(Arc::clone(store));
    let theirs = SenderConversations::new(state, platform, sender)?;
    // One listing of every key: the cluster's store reads them all for any page anyway, so
    // paging through it would read them all once a page.
    let keys = store.list(None, usize::MAX).await.map_err(storage_error)?;
    // The same listing holds the titles' keys: only those are read.
    let listed: HashSet<&SessionKey> = keys.iter().collect();
    let mut found = Vec::new();
    for key in &keys {
        let Some((conversation_id, shared_with)) = theirs.named(key) else {
            continue;
        };
        let Some(snapshot) = store.load(key).await.map_err(storage_error)? else {
            continue;
        };
        let title_key = ConversationTitles::key(key).map_err(storage_error)?;
        let title = if listed.contains(&title_key) {
            titles.get(key).await.map_err(storage_error)?
        } else {
            None
        };
        found.push(Found {
            snapshot,
            title,
            conversation_id,
            shared_with,
        });
    }
    Ok(found)
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
            conversations.retain(|found| mentions(&found.snapshot, found.title.as_ref(), &search));
        }
        conversations.sort_by(|a, b| {
            let (a, b) = (&a.snapshot, &b.snapshot);
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

/// `GET /api/v1/conversations/{conversation_id}`: the conversation's history as the
/// sessions API shows it, for the caller who may see it (a sender's token included).
pub(crate) async fn show(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
) -> Result<Response, ApiError> {
    match state.ingress.history(key.clone()).await {
        Ok(Some(view)) => Ok(Json(view).into_response()),
        Ok(None) => Err(ApiError::not_found(format!("no conversation {key}"))),
        Err(error) => Err(ApiError::from(error)),
    }
}

/// `DELETE /api/v1/conversations/{conversation_id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
) -> Result<Response, ApiError> {
    let existed = state
        .ingress
        .reset(key.clone())
        .await
        .map_err(ApiError::from)?;
    ConversationTitles::new(Arc::clone(state.node.store()))
        .forget(&key)
        .await
        .map_err(storage_error)?;
    if !existed {
        return Err(ApiError::not_found(format!("no conversation {key}")));
    }
    Ok(Json(serde_json::json!({"key": key.to_string(), "deleted": true})).into_response())
}

/// A conversation named by the path (`{conversation_id}`, with `?platform=`, default `ws`)
/// that the caller may touch: built only by checking the caller's right to it.
pub(crate) struct OwnedConversation(pub(crate) SessionKey);

impl FromRequestParts<AppState> for OwnedConversation {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(mut params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| bad_query(rejection.body_text()))?;
        let conversation = params
            .remove("conversation_id")
            .ok_or_else(|| bad_query("the path names no conversation"))?;
        let Query(query) = Query::<PlatformQuery>::from_request_parts(parts, state)
            .await
            .map_err(|_| bad_query("use ?platform="))?;
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        let platform = platform_of(query.platform)?;
        let owner = conversation
            .split_once('/')
            .map_or(conversation.as_str(), |(sender, _)| sender);
        sender_for(state, &caller, Some(owner.to_owned()))?;
        linked::session_key(state, &platform, &conversation)
            .map(Self)
            .map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ApiCode::InvalidSessionKey,
                    error.to_string(),
                )
            })
    }
}

/// The stored conversation `key`, or 404.
async fn stored(state: &AppState, key: &SessionKey) -> Result<SessionSnapshot, ApiError> {
    state
        .node
        .store()
        .load(key)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| ApiError::not_found(format!("no conversation {key}")))
}

/// `POST /api/v1/conversations/{conversation_id}/title`: the assistant titles the
/// conversation after its first exchange (once: a titled conversation keeps its title).
/// The model gets the person's first message; when it has no usable answer (or no model
/// is configured), the title is that message's first line.
pub(crate) async fn generate_title(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
) -> Result<Json<serde_json::Value>, ApiError> {
    let titles = ConversationTitles::new(Arc::clone(state.node.store()));
    if let Some(title) = titles.get(&key).await.map_err(storage_error)? {
        return Ok(Json(serde_json::json!({"title": title.as_str()})));
    }
    let snapshot = stored(&state, &key).await?;
    let first = snapshot
        .history
        .iter()
        .find(|entry| entry.role == Role::User)
        .map(|entry| entry.content.to_string())
        .ok_or_else(|| ApiError::not_found(format!("{key} has no message to title")))?;
    let answer = if state
        .node
        .default_provider()
        .is_some_and(|info| info.kind == "echo")
    {
        None
    } else {
        let requester: Arc<str> = Arc::from(key.conversation_id());
        state
            .node
            .complete(title_request(&first), DeltaSink::discard(), requester)
            .await
            .inspect_err(|error| {
                tracing::info!(%key, %error, "the model gave no title; the first message is the title");
            })
            .ok()
            .map(|completion| completion.text)
    };
    let title = title_of(answer.as_deref(), &first)
        .ok_or_else(|| ApiError::not_found(format!("{key} has nothing to title")))?;
    titles.set(&key, &title).await.map_err(storage_error)?;
    Ok(Json(serde_json::json!({"title": title.as_str()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBody {
    title: String,
}

/// `PATCH /api/v1/conversations/{conversation_id}` `{"title"}`: the person renames it.
pub(crate) async fn rename(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: RenameBody = admin_json_body(body).await?;
    let title = Title::parse(&body.title).map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiCode::InvalidRequest,
            error.to_string(),
        )
    })?;
    stored(&state, &key).await?;
    ConversationTitles::new(Arc::clone(state.node.store()))
        .set(&key, &title)
        .await
        .map_err(storage_error)?;
    Ok(Json(serde_json::json!({"title": title.as_str()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopBody {
    message_id: String,
}

/// `POST /api/v1/conversations/{conversation_id}/stop` `{"message_id"}`: stops generating
/// the answer to that message. `202`, with `outcome`: `stopping` when it was running,
/// `not_running` when it was not (it ended, or it has not begun and stops as it does);
/// the turn's own answer says how it ended.
pub(crate) async fn stop(
    State(state): State<AppState>,
    OwnedConversation(key): OwnedConversation,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let body: StopBody = admin_json_body(body).await?;
    let outcome = state
        .ingress
        .stop(key.clone(), body.message_id.clone())
        .await
        .map_err(ApiError::from)?;
    let answer = serde_json::json!({
        "key": key.to_string(), "message_id": body.message_id, "outcome": outcome
    });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
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
    fn a_linked_senders_main_conversation_is_listed_as_the_persons_under_the_senders_id() {
        let key = |text: &str| SessionKey::parse(text).unwrap();
        let telegram = vec!["telegram:42".to_owned()];
        let theirs = SenderConversations {
            platform: "ws",
            sender: "ada",
            person: Some((key("person:ada"), telegram.clone())),
        };
        assert_eq!(
            theirs.named(&key("person:ada")),
            Some(("ada".into(), telegram))
        );
        assert_eq!(
            theirs.named(&key("ws:ada")),
            None,
            "replaced by the person's"
        );
        assert_eq!(
            theirs.named(&key("ws:ada/trip")),
            Some(("ada/trip".into(), Vec::new()))
        );
        assert_eq!(theirs.named(&key("person:bob")), None);
        assert_eq!(theirs.named(&key("api:ada")), None);
        let unlinked = SenderConversations {
            person: None,
            ..theirs
        };
        assert_eq!(
            unlinked.named(&key("ws:ada")),
            Some(("ada".into(), Vec::new()))
        );
        assert_eq!(unlinked.named(&key("person:ada")), None);
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
