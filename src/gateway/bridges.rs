//! The bridges over HTTP:
//! - `POST|GET /bridges/{name}/webhook` and `POST /bridges/{name}/interactions`: platform
//!   callbacks, handed to the bridge with the raw body (signatures are over its bytes).
//!   These are public: each bridge checks its platform's signature or secret itself;
//! - `GET /api/v1/bridges`: every bridge's real state and capabilities;
//! - `GET /api/v1/pairing`, `POST /api/v1/pairing/approve`, `DELETE /api/v1/pairing/{sender}`:
//!   what `troupe pair …` uses;
//! - `GET /api/v1/identities`, `POST /api/v1/identities/link`,
//!   `DELETE /api/v1/identities/{member}`: what `troupe identity …` uses.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use troupe_actors::bridge::WebhookRequest;

use super::AppState;
use super::body::admin_json_body;
use super::error::{ApiCode, ApiError};

/// A platform callback. The bridge is looked up first and the body read only up to its
/// platform's cap, so an unknown name or a bridge without webhooks costs no body at all.
pub(crate) async fn webhook(
    State(state): State<AppState>,
    Path((name, endpoint)): Path<(String, String)>,
    method: Method,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((bridge, context)) = state.bridges.bridge(&name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ApiCode::NotFound,
            format!("no bridge named `{name}`"),
        )
        .into_response();
    };
    let Some(limit) = bridge.webhook_body_limit() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ApiCode::NotFound,
            format!("the bridge `{name}` takes no webhooks"),
        )
        .into_response();
    };
    // Held until the bridge is done with the body.
    let _room = match state.webhook_bodies.reserve(&headers, limit) {
        Ok(room) => room,
        Err(refusal) => return refusal.into_response(),
    };
    let body = match super::body::read_body(body, limit).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let request = WebhookRequest {
        method: method.as_str().to_owned(),
        endpoint,
        headers: headers
            .iter()
            .filter_map(|(key, value)| {
                Some((
                    key.as_str().to_ascii_lowercase(),
                    value.to_str().ok()?.to_owned(),
                ))
            })
            .collect(),
        query,
        body,
    };
    let answer = bridge.webhook(request, &context).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
        .into_response()
}

pub(crate) async fn list(State(state): State<AppState>) -> Response {
    axum::Json(json!({"bridges": statuses(&state)})).into_response()
}

/// Every bridge's status and capabilities, as `GET /api/v1/bridges` and `/ops` show them.
pub(crate) fn statuses(state: &AppState) -> Vec<Value> {
    state
        .bridges
        .statuses()
        .into_iter()
        .map(|(status, capabilities)| {
            let mut value = serde_json::to_value(status).unwrap_or_default();
            value["capabilities"] = serde_json::to_value(capabilities).unwrap_or_default();
            value
        })
        .collect()
}

fn storage_error(error: &troupe_actors::bridge::BridgeError) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ApiCode::StorageError,
        error.message.clone(),
    )
    .into_response()
}

/// 204 when something was removed, 404 `code` when there was nothing to remove.
fn removal(
    removed: Result<bool, troupe_actors::bridge::BridgeError>,
    code: ApiCode,
    message: String,
) -> Response {
    match removed {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::new(StatusCode::NOT_FOUND, code, message).into_response(),
        Err(error) => storage_error(&error),
    }
}

pub(crate) async fn pairing(State(state): State<AppState>) -> Response {
    let store = state.bridges.store();
    let (requests, paired) = match (store.pairing_requests().await, store.paired_senders().await) {
        (Ok(requests), Ok(paired)) => (requests, paired),
        (Err(error), _) | (_, Err(error)) => return storage_error(&error),
    };
    axum::Json(json!({"pending": requests, "paired": paired})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    code: String,
}

pub(crate) async fn approve(State(state): State<AppState>, body: Body) -> Response {
    let body: ApproveBody = match admin_json_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    match state.bridges.store().approve(&body.code).await {
        Ok(Some(paired)) => {
            tracing::info!(sender = %paired.sender, "pairing approved");
            axum::Json(json!({"paired": paired})).into_response()
        }
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            ApiCode::UnknownCode,
            "no pending pairing has this code; see `troupe pair list`",
        )
        .into_response(),
        Err(error) => storage_error(&error),
    }
}

pub(crate) async fn revoke(State(state): State<AppState>, Path(sender): Path<String>) -> Response {
    let removed = state.bridges.store().revoke(&sender).await;
    removal(
        removed,
        ApiCode::NotPaired,
        format!("`{sender}` is not paired"),
    )
}

pub(crate) async fn identities(State(state): State<AppState>) -> Response {
    match state.bridges.store().people().await {
        Ok(people) => axum::Json(json!({"people": people})).into_response(),
        Err(error) => storage_error(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkBody {
    members: Vec<String>,
    #[serde(default)]
    person: Option<String>,
}

pub(crate) async fn link(State(state): State<AppState>, body: Body) -> Response {
    let body: LinkBody = match admin_json_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    match state
        .bridges
        .store()
        .link(body.person.as_deref(), &body.members)
        .await
    {
        Ok(person) => axum::Json(json!({"person": person})).into_response(),
        Err(error) if error.kind == troupe_actors::bridge::BridgeErrorKind::Rejected => {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiCode::InvalidIdentity,
                error.message,
            )
            .into_response()
        }
        Err(error) => storage_error(&error),
    }
}

pub(crate) async fn unlink(State(state): State<AppState>, Path(member): Path<String>) -> Response {
    let removed = state.bridges.store().unlink(&member).await;
    removal(
        removed,
        ApiCode::NotLinked,
        format!("`{member}` is not linked to anyone"),
    )
}
