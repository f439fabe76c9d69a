//! The owner's commands against a running node, through its API (the node holds its
//! journals open, so the CLI never writes them directly): `troupe pair approve|list|revoke`,
//! `troupe identity link|unlink|list`, `troupe skills` and `troupe ops log-level`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::{IdentityCommand, NodeArgs, OpsCommand, PairCommand};

pub(crate) async fn run(command: PairCommand) -> anyhow::Result<ExitCode> {
    match command {
        PairCommand::Approve { code, node } => {
            let answer = request(
                &node,
                reqwest::Method::POST,
                "/api/v1/pairing/approve",
                Some(json!({"code": code})),
            )
            .await?;
            let paired = &answer["paired"];
            println!(
                "paired {} ({}) on {}",
                paired["sender"].as_str().unwrap_or_default(),
                paired["sender_name"].as_str().unwrap_or_default(),
                paired["bridge"].as_str().unwrap_or_default()
            );
        }
        PairCommand::List { node } => {
            let answer = request(&node, reqwest::Method::GET, "/api/v1/pairing", None).await?;
            println!("pending:");
            for request in answer["pending"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {} ({}) on {}",
                    request["code"].as_str().unwrap_or_default(),
                    request["sender"].as_str().unwrap_or_default(),
                    request["sender_name"].as_str().unwrap_or_default(),
                    request["bridge"].as_str().unwrap_or_default()
                );
            }
            println!("paired:");
            for paired in answer["paired"].as_array().into_iter().flatten() {
                println!(
                    "  {} ({}) on {}",
                    paired["sender"].as_str().unwrap_or_default(),
                    paired["sender_name"].as_str().unwrap_or_default(),
                    paired["bridge"].as_str().unwrap_or_default()
                );
            }
        }
        PairCommand::Revoke { sender, node } => {
            let path = format!("/api/v1/pairing/{sender}");
            request(&node, reqwest::Method::DELETE, &path, None).await?;
            println!("revoked {sender}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn identity(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Link {
            members,
            person,
            node,
        } => {
            let body = json!({"members": members, "person": person});
            let answer = request(
                &node,
                reqwest::Method::POST,
                "/api/v1/identities/link",
                Some(body),
            )
            .await?;
            let person = &answer["person"];
            println!(
                "{}: {}",
                person["person"].as_str().unwrap_or_default(),
                join(&person["members"])
            );
        }
        IdentityCommand::Unlink { member, node } => {
            let path = format!("/api/v1/identities/{member}");
            request(&node, reqwest::Method::DELETE, &path, None).await?;
            println!("unlinked {member}");
        }
        IdentityCommand::List { node } => {
            let answer = request(&node, reqwest::Method::GET, "/api/v1/identities", None).await?;
            for person in answer["people"].as_array().into_iter().flatten() {
                println!(
                    "{}: {}",
                    person["person"].as_str().unwrap_or_default(),
                    join(&person["members"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `troupe skills`: every skill, its state and tools (and why it is not available).
pub(crate) async fn skills(node: NodeArgs) -> anyhow::Result<ExitCode> {
    let answer = request(&node, reqwest::Method::GET, "/api/v1/skills", None).await?;
    for skill in answer["skills"].as_array().into_iter().flatten() {
        let text = |key: &str| skill[key].as_str().unwrap_or_default().to_owned();
        println!(
            "{:<16} {:<8} {:<12} {}",
            text("name"),
            text("kind"),
            text("state"),
            join(&skill["tools"])
        );
        if let Some(error) = skill["last_error"].as_str() {
            println!("{:<16} last error: {error}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn join(members: &Value) -> String {
    members
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) async fn ops(command: OpsCommand) -> anyhow::Result<ExitCode> {
    let OpsCommand::LogLevel { level, node } = command;
    let path = "/api/v1/ops/log-level";
    let answer = match level {
        Some(level) => {
            request(
                &node,
                reqwest::Method::PUT,
                path,
                Some(json!({"level": level})),
            )
            .await?
        }
        None => request(&node, reqwest::Method::GET, path, None).await?,
    };
    println!("{}", answer["level"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn request(
    node: &NodeArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}{path}", node.url.trim_end_matches('/'));
    let mut request = client.request(method, &url);
    if let Some(token) = &node.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the node at {}", node.url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value["error"]["message"].as_str().unwrap_or(&text);
        anyhow::bail!("{message} ({status})");
    }
    Ok(value)
}
