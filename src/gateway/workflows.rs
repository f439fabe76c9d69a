//! `/api/v1/workflows`: the owner's workflows, their schedules and runs.
//!
//! - `GET /api/v1/workflows`: every workflow with its triggers (last and next firing,
//!   missed firings), its latest run, and the files that did not load;
//! - `POST /api/v1/workflows`: adds or replaces one (TOML with `content-type:
//!   application/toml`, else JSON), validated with errors that name the key;
//! - `GET|DELETE /api/v1/workflows/{id}`;
//! - `POST /api/v1/workflows/{id}/runs` (`{"input": {…}}`, optional) starts a run;
//!   `GET` lists its runs;
//! - `GET /api/v1/workflows/{id}/runs/{run}`: the run step by step with timings, and its
//!   journal;
//! - `POST /api/v1/workflows/{id}/runs/{run}/{cancel|pause|resume}`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use troupe_workflows::runs::{WorkflowError, WorkflowErrorCode};
use troupe_workflows::{Cause, Control, StartRun, WorkflowDefinition, Workflows};

use super::AppState;
use super::body::read_body;
use super::error::{ApiCode, ApiError};

/// Largest definition accepted.
const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Runs listed per workflow.
const RUNS_LISTED: usize = 100;

fn engine(state: &AppState) -> Result<&Workflows, ApiError> {
    state.workflows.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ApiCode::WorkflowsDisabled,
            "workflows are off on this node ([workflows] enabled = false)",
        )
    })
}

fn refusal(error: &WorkflowError) -> ApiError {
    let (status, code) = match (error.code(), error) {
        (WorkflowErrorCode::NotFound, WorkflowError::NoRun(_)) => {
            (StatusCode::NOT_FOUND, ApiCode::UnknownRun)
        }
        (WorkflowErrorCode::NotFound, _) => (StatusCode::NOT_FOUND, ApiCode::UnknownWorkflow),
        (WorkflowErrorCode::Invalid, _) => {
            (StatusCode::UNPROCESSABLE_ENTITY, ApiCode::InvalidWorkflow)
        }
        (WorkflowErrorCode::Conflict, WorkflowError::Ended(_)) => {
            (StatusCode::CONFLICT, ApiCode::RunEnded)
        }
        (WorkflowErrorCode::Conflict, _) => (StatusCode::CONFLICT, ApiCode::WorkflowInUse),
        (WorkflowErrorCode::Unavailable, _) => (StatusCode::SERVICE_UNAVAILABLE, ApiCode::NotReady),
        (WorkflowErrorCode::Storage, _) => (StatusCode::SERVICE_UNAVAILABLE, ApiCode::StorageError),
    };
    ApiError::new(status, code, error.to_string())
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/workflows`.
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    answer(list_all(&state).await)
}

async fn list_all(state: &AppState) -> Result<Response, ApiError> {
    let workflows = engine(state)?;
    let runs = workflows
        .runs(None)
        .await
        .map_err(|error| refusal(&error))?;
    let mut listed = Vec::new();
    for workflow in workflows.catalog().list() {
        let triggers = troupe_workflows::schedule::report(workflows, &workflow).await;
        let latest = runs.iter().find(|run| run.workflow == workflow.name());
        let running = runs
            .iter()
            .filter(|run| run.workflow == workflow.name() && !run.status.is_over())
            .count();
        listed.push(json!({
            "name": workflow.name(),
            "description": workflow.definition().description,
            "owner": workflow.owner(),
            "steps": workflow.definition().steps.len(),
            "triggers": workflow.definition().triggers.iter().zip(&triggers).map(|(definition, report)| {
                json!({"trigger": definition, "last_due_ms": report.last_due_ms,
                    "next_due_ms": report.next_due_ms, "missed": report.missed})
            }).collect::<Vec<_>>(),
            "running": running,
            "latest_run": latest,
        }));
    }
    Ok(axum::Json(json!({
        "workflows": listed,
        "unloaded": workflows.catalog().unloaded(),
    }))
    .into_response())
}

/// Reads a definition: TOML or JSON by its content type.
fn definition(headers: &HeaderMap, bytes: &[u8]) -> Result<WorkflowDefinition, ApiError> {
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ApiCode::InvalidWorkflow,
            message,
        )
    };
    let is_toml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/toml"));
    if is_toml {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| invalid("the definition is not UTF-8".to_owned()))?;
        WorkflowDefinition::from_toml(text).map_err(|error| invalid(error.to_string()))
    } else {
        serde_json::from_slice(bytes)
            .map_err(|error| invalid(format!("the workflow is not valid JSON: {error}")))
    }
}

/// `POST /api/v1/workflows`.
pub(crate) async fn put(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            let bytes = read_body(body, MAX_DEFINITION_BYTES).await?;
            let definition = definition(&headers, &bytes)?;
            let replaced = workflows
                .catalog()
                .put(definition.clone())
                .await
                .map_err(|error| refusal(&WorkflowError::from(error)))?;
            let status = if replaced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, axum::Json(json!({"workflow": definition}))).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/workflows/{id}`.
pub(crate) async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            let workflow = workflows
                .catalog()
                .get(&name)
                .ok_or_else(|| refusal(&WorkflowError::NoWorkflow(name.clone())))?;
            let triggers = troupe_workflows::schedule::report(workflows, &workflow).await;
            let mut runs = workflows
                .runs(Some(&name))
                .await
                .map_err(|error| refusal(&error))?;
            runs.truncate(RUNS_LISTED);
            Ok(axum::Json(json!({
                "workflow": workflow.definition(),
                "triggers": triggers,
                "runs": runs,
            }))
            .into_response())
        }
        .await,
    )
}

/// `DELETE /api/v1/workflows/{id}`.
pub(crate) async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            match workflows.catalog().remove(&name).await {
                Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
                Ok(false) => Err(refusal(&WorkflowError::NoWorkflow(name))),
                Err(error) => Err(refusal(&WorkflowError::from(error))),
            }
        }
        .await,
    )
}

/// The body of `POST /api/v1/workflows/{id}/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    input: Map<String, Value>,
}

/// `POST /api/v1/workflows/{id}/runs`. With an `Idempotency-Key` header the run's id is
/// made from the key, so a retried request answers the run the first one started.
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            let bytes = read_body(body, MAX_DEFINITION_BYTES).await?;
            let request: RunRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
                RunRequest::default()
            } else {
                serde_json::from_slice(&bytes).map_err(|error| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ApiCode::InvalidJson,
                        format!("the body is not {{\"input\": {{…}}}}: {error}"),
                    )
                })?
            };
            let key = headers
                .get("idempotency-key")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .trim_matches('"');
            let run = (!key.is_empty())
                .then(|| troupe_workflows::journal::event_run_id(&name, "api", key));
            let summary = workflows
                .start(StartRun {
                    workflow: name,
                    input: request.input,
                    cause: Cause::Manual { by: "api".into() },
                    run,
                })
                .await
                .map_err(|error| refusal(&error))?;
            Ok((StatusCode::ACCEPTED, axum::Json(json!({"run": summary}))).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/workflows/{id}/runs`.
pub(crate) async fn runs(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            let mut runs = workflows
                .runs(Some(&name))
                .await
                .map_err(|error| refusal(&error))?;
            if runs.is_empty() && workflows.catalog().get(&name).is_none() {
                return Err(refusal(&WorkflowError::NoWorkflow(name)));
            }
            runs.truncate(RUNS_LISTED);
            Ok(axum::Json(json!({"runs": runs})).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/workflows/{id}/runs/{run}`.
pub(crate) async fn run(
    State(state): State<AppState>,
    Path((name, run)): Path<(String, String)>,
) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            let (summary, records) = workflows.run(&run).await.map_err(|error| refusal(&error))?;
            if summary.workflow != name {
                return Err(refusal(&WorkflowError::NoRun(run)));
            }
            Ok(axum::Json(json!({
                "run": summary,
                "steps": troupe_workflows::view::steps(&records),
                "journal": records,
            }))
            .into_response())
        }
        .await,
    )
}

/// `POST /api/v1/workflows/{id}/runs/{run}/{action}`.
pub(crate) async fn control(
    State(state): State<AppState>,
    Path((name, run, action)): Path<(String, String, String)>,
) -> Response {
    answer(
        async {
            let workflows = engine(&state)?;
            let control = match action.as_str() {
                "cancel" => Control::Cancel,
                "pause" => Control::Pause,
                "resume" => Control::Run,
                other => {
                    return Err(ApiError::not_found(format!(
                        "`{other}` is not cancel, pause or resume"
                    )));
                }
            };
            let (summary, _) = workflows.run(&run).await.map_err(|error| refusal(&error))?;
            if summary.workflow != name {
                return Err(refusal(&WorkflowError::NoRun(run)));
            }
            let summary = workflows
                .control(&run, control)
                .await
                .map_err(|error| refusal(&error))?;
            Ok(axum::Json(json!({"run": summary})).into_response())
        }
        .await,
    )
}
