//! `POST /hooks/workflows/{name}`: a workflow's signed webhook trigger. Signed like the
//! webhook bridge: `X-Troupe-Timestamp: <unix seconds>` and
//! `X-Troupe-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`, the secret
//! in the environment variable the trigger names (`webhook_secret_env`). The JSON body
//! becomes the run's `input.webhook`; an `Idempotency-Key` header makes a retried call
//! start no second run. Answers `202 {"run": …}`. The signature is the route's
//! authentication; the node's Host, Origin, admission and body limits apply as everywhere.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use troupe_actors::message::unix_now;
use troupe_actors::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_v1};
use troupe_workflows::journal::event_run_id;
use troupe_workflows::plan::When;
use troupe_workflows::{Cause, StartRun};

use super::AppState;
use super::body::read_body;
use super::error::{ApiCode, ApiError};

/// Largest webhook body.
const MAX_HOOK_BYTES: usize = 256 * 1024;
/// How far a signed timestamp may be from the node's clock.
const WINDOW_SECS: u64 = 300;

fn refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ApiCode::Unauthorized,
        "the webhook's signature is missing, stale or wrong",
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// `POST /hooks/workflows/{name}`.
pub(crate) async fn call(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match started(&state, &name, &headers, body).await {
        Ok(run) => (StatusCode::ACCEPTED, axum::Json(json!({"run": run}))).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn started(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let unknown = || ApiError::not_found(format!("no workflow `{name}` takes webhooks"));
    let workflows = state.workflows.as_ref().ok_or_else(unknown)?;
    let workflow = workflows.catalog().get(name).ok_or_else(unknown)?;
    let (index, trigger, secret_env) = workflow
        .triggers()
        .iter()
        .enumerate()
        .find_map(|(index, trigger)| match &trigger.when {
            When::Webhook { secret_env } => Some((index, trigger, secret_env)),
            _ => None,
        })
        .ok_or_else(unknown)?;
    let _room = state.webhook_bodies.reserve(headers, MAX_HOOK_BYTES)?;
    let bytes = read_body(body, MAX_HOOK_BYTES).await?;
    let secret = std::env::var(secret_env).map_err(|_| {
        tracing::error!(
            workflow = name,
            secret_env,
            "a workflow's webhook secret is not set; its calls are refused"
        );
        refused()
    })?;
    let genuine = verify_v1(
        secret.as_bytes(),
        header(headers, TIMESTAMP_HEADER),
        header(headers, SIGNATURE_HEADER),
        &bytes,
        unix_now(),
        WINDOW_SECS,
    );
    if !genuine {
        return Err(refused());
    }
    let payload: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::InvalidJson,
                format!("the body is not JSON: {error}"),
            )
        })?
    };
    let mut input: Map<String, Value> = trigger.input.clone();
    input.insert("webhook".to_owned(), payload);
    let key = header(headers, "idempotency-key").trim_matches('"');
    let run = (!key.is_empty()).then(|| event_run_id(name, "w", key));
    let summary = workflows
        .start(StartRun {
            workflow: name.to_owned(),
            input,
            cause: Cause::Webhook { trigger: index },
            run,
        })
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiCode::StorageError,
                error.to_string(),
            )
        })?;
    Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
}
