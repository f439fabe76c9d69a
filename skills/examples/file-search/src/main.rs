//! An example HTTP skill, complete and small: file search over one mounted folder, served
//! on Troupe's skill contract (see `docs/skills.md`, "Write your own skill").
//!
//! - `GET /manifest` returns the manifest (tools `search` and `read`);
//! - `POST /execute` runs `{"action", "arguments", "call_id", "session"}` and answers
//!   `{"result": …}` or `{"error": {"code", "message"}}`;
//! - `GET /healthz` answers `ok` (unsigned, for container health checks).
//!
//! Every contract request must be signed (`X-Troupe-Timestamp`, `X-Troupe-Signature`)
//! with the secret shared with Troupe. Configuration comes from the environment:
//! `SKILL_SECRET` (or `SKILL_SECRET_FILE`), `SKILL_ROOT` (default `/data`) and
//! `LISTEN` (default `0.0.0.0:8080`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use troupe_actors::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use troupe_actors::skill::{SkillError, SkillErrorCode};
use troupe_skills::builtin::FileSearch;
use troupe_skills::http::{ExecuteRequest, MAX_BODY_BYTES, verify_request};

struct App {
    search: FileSearch,
    secret: String,
}

fn error_response(error: &SkillError) -> Response {
    let status = match error.code {
        SkillErrorCode::Forbidden => StatusCode::FORBIDDEN,
        SkillErrorCode::InvalidArguments | SkillErrorCode::UnknownTool => StatusCode::BAD_REQUEST,
        SkillErrorCode::NotFound => StatusCode::NOT_FOUND,
        SkillErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(error.to_json())).into_response()
}

/// Checks the signature headers over `body`; the refusal as a response.
fn check_signature(app: &App, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    verify_request(
        app.secret.as_bytes(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        body,
    )
    .err()
    .map(|error| (StatusCode::UNAUTHORIZED, axum::Json(error.to_json())).into_response())
}

async fn manifest(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refused) = check_signature(&app, &headers, b"") {
        return refused;
    }
    axum::Json(FileSearch::manifest_of("file-search")).into_response()
}

async fn execute(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = check_signature(&app, &headers, &body) {
        return refused;
    }
    let request: ExecuteRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return error_response(&SkillError::invalid(format!(
                "the request is not valid: {error}"
            )));
        }
    };
    let search = app.search.clone();
    let outcome =
        tokio::task::spawn_blocking(move || search.run(&request.action, &request.arguments))
            .await
            .unwrap_or_else(|error| Err(SkillError::failed(error.to_string())));
    match outcome {
        Ok(result) => axum::Json(json!({"result": result})).into_response(),
        Err(error) => error_response(&error),
    }
}

fn secret() -> anyhow::Result<String> {
    let secret = match (
        std::env::var("SKILL_SECRET"),
        std::env::var("SKILL_SECRET_FILE"),
    ) {
        (Ok(secret), _) => secret,
        (Err(_), Ok(path)) => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?
        }
        _ => anyhow::bail!(
            "set SKILL_SECRET (or SKILL_SECRET_FILE) to the secret shared with Troupe"
        ),
    };
    let secret = secret.trim().to_owned();
    anyhow::ensure!(
        secret.len() >= 16,
        "the shared secret must be at least 16 characters"
    );
    Ok(secret)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("SKILL_ROOT").unwrap_or_else(|_| "/data".into()));
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".into());
    let search = FileSearch::new(std::slice::from_ref(&root)).map_err(anyhow::Error::msg)?;
    let app = Arc::new(App {
        search,
        secret: secret()?,
    });
    let router = Router::new()
        .route("/manifest", get(manifest))
        .route("/execute", post(execute))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "file-search skill serving {} on {}",
        root.display(),
        listener.local_addr()?
    );
    axum::serve(listener, router).await?;
    Ok(())
}
