//! `troupe workflow list|show|add|remove|run|runs|logs|cancel|pause|resume`: a running
//! node's workflows through `/api/v1/workflows`. A run's id begins with its workflow's name
//! (`brief.3f2a…`, or `brief.t0.<due ms>` for a scheduled firing), so commands about a run
//! take only its id.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::admin::request;
use crate::cli::{NodeArgs, WorkflowCommand};

pub(crate) async fn run(command: WorkflowCommand, node: &NodeArgs) -> anyhow::Result<ExitCode> {
    match command {
        WorkflowCommand::List => {
            let listed = request(node, Method::GET, "/api/v1/workflows", None).await?;
            emit(&list_table(&listed))?;
        }
        WorkflowCommand::Show { name } => {
            let shown = request(
                node,
                Method::GET,
                &format!("/api/v1/workflows/{name}"),
                None,
            )
            .await?;
            let definition: troupe_workflows::WorkflowDefinition =
                serde_json::from_value(shown["workflow"].clone())?;
            emit(&format!("{}\n", definition.to_toml()?))?;
            emit(&runs_table(&shown["runs"]))?;
        }
        WorkflowCommand::Add { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let definition = troupe_workflows::WorkflowDefinition::from_toml(&text)?;
            let body = serde_json::to_value(&definition)?;
            request(node, Method::POST, "/api/v1/workflows", Some(body)).await?;
            emit(&format!("workflow {} saved\n", definition.name))?;
        }
        WorkflowCommand::Remove { name } => {
            request(
                node,
                Method::DELETE,
                &format!("/api/v1/workflows/{name}"),
                None,
            )
            .await?;
            emit(&format!("workflow {name} removed\n"))?;
        }
        WorkflowCommand::Run { name, input, wait } => {
            return start(node, &name, &input, wait).await;
        }
        WorkflowCommand::Runs { name } => {
            let runs = request(
                node,
                Method::GET,
                &format!("/api/v1/workflows/{name}/runs"),
                None,
            )
            .await?;
            emit(&runs_table(&runs["runs"]))?;
        }
        WorkflowCommand::Logs { run } => {
            let shown = request(node, Method::GET, &run_path(&run), None).await?;
            emit(&logs(&shown))?;
        }
        WorkflowCommand::Cancel { run } => control(node, &run, "cancel").await?,
        WorkflowCommand::Pause { run } => control(node, &run, "pause").await?,
        WorkflowCommand::Resume { run } => control(node, &run, "resume").await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// `/api/v1/workflows/{workflow}/runs/{run}`.
fn run_path(run: &str) -> String {
    let workflow = run.split('.').next().unwrap_or(run);
    format!("/api/v1/workflows/{workflow}/runs/{run}")
}

async fn control(node: &NodeArgs, run: &str, action: &str) -> anyhow::Result<()> {
    let answer = request(
        node,
        Method::POST,
        &format!("{}/{action}", run_path(run)),
        None,
    )
    .await?;
    emit(&format!(
        "{run}: {}\n",
        answer["run"]["status"].as_str().unwrap_or("?")
    ))?;
    Ok(())
}

/// `key=value` inputs; a value that parses as JSON is taken as JSON.
fn inputs(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--input {pair}: expected KEY=VALUE"))?;
            let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
            Ok((key.to_owned(), value))
        })
        .collect()
}

async fn start(
    node: &NodeArgs,
    name: &str,
    input: &[String],
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let body = json!({"input": inputs(input)?});
    let started = request(
        node,
        Method::POST,
        &format!("/api/v1/workflows/{name}/runs"),
        Some(body),
    )
    .await?;
    let run = started["run"]["run"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    emit(&format!("{run}\n"))?;
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let shown = request(node, Method::GET, &run_path(&run), None).await?;
        let status = shown["run"]["status"].as_str().unwrap_or("running");
        if !matches!(status, "running" | "paused") {
            emit(&logs(&shown))?;
            return Ok(if status == "finished" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || "-".to_owned(),
            |at| at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

/// Rows as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn list_table(listed: &Value) -> String {
    let mut rows = vec![
        ["NAME", "NEXT (UTC)", "RUNNING", "LAST RUN", "MISSED"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for workflow in listed["workflows"].as_array().into_iter().flatten() {
        let triggers = workflow["triggers"].as_array().cloned().unwrap_or_default();
        let next = triggers
            .iter()
            .filter_map(|trigger| trigger["next_due_ms"].as_i64())
            .min();
        let missed: usize = triggers
            .iter()
            .map(|trigger| trigger["missed"].as_array().map_or(0, Vec::len))
            .sum();
        let latest = &workflow["latest_run"];
        rows.push(vec![
            workflow["name"].as_str().unwrap_or_default().to_owned(),
            time(next),
            workflow["running"].to_string(),
            latest["status"].as_str().map_or_else(
                || "-".to_owned(),
                |status| format!("{status} {}", time(latest["started_ms"].as_i64())),
            ),
            missed.to_string(),
        ]);
    }
    let mut out = columns(&rows);
    for unloaded in listed["unloaded"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "not loaded: {}: {}\n",
            unloaded["file"].as_str().unwrap_or_default(),
            unloaded["error"].as_str().unwrap_or_default()
        ));
    }
    out
}

fn runs_table(runs: &Value) -> String {
    let mut rows = vec![
        ["RUN", "STATUS", "STARTED (UTC)", "STEPS", "ERROR"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for run in runs.as_array().into_iter().flatten() {
        rows.push(vec![
            run["run"].as_str().unwrap_or_default().to_owned(),
            run["status"].as_str().unwrap_or_default().to_owned(),
            time(run["started_ms"].as_i64()),
            run["steps_finished"].to_string(),
            run["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ]);
    }
    columns(&rows)
}

/// A run's steps, one line per attempt, then how it ended.
fn logs(shown: &Value) -> String {
    let run = &shown["run"];
    let mut out = format!(
        "{} ({}), started {} UTC\n",
        run["run"].as_str().unwrap_or_default(),
        run["status"].as_str().unwrap_or_default(),
        time(run["started_ms"].as_i64())
    );
    for step in shown["steps"].as_array().into_iter().flatten() {
        for attempt in step["attempts"].as_array().into_iter().flatten() {
            let outcome = match (
                attempt["error"]["message"].as_str(),
                attempt["duration_ms"].as_i64(),
            ) {
                (Some(error), _) => format!("failed: {error}"),
                (None, Some(duration)) => format!("done in {duration} ms"),
                (None, None) => "running".to_owned(),
            };
            out.push_str(&format!(
                "{}  {}  attempt {}  {outcome}\n",
                time(attempt["started_ms"].as_i64()),
                step["step"].as_str().unwrap_or_default(),
                attempt["attempt"]
            ));
        }
    }
    if let Some(Value::Object(end)) = shown["journal"]
        .as_array()
        .and_then(|journal| journal.last())
    {
        match end.get("type").and_then(Value::as_str) {
            Some("finished") => {
                // Text as it is; anything else as JSON.
                let output = match end.get("output") {
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                out.push_str(&format!("output: {output}\n"));
            }
            Some("failed") => out.push_str(&format!(
                "failed: {}\n",
                end.get("error")
                    .map_or_else(String::new, |error| error["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned())
            )),
            Some("cancelled") => out.push_str("cancelled\n"),
            _ => {}
        }
    }
    out
}
