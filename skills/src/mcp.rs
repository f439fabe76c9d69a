//! MCP servers as skills: Troupe is an MCP client (the official `rmcp` SDK) over stdio (a
//! configured command, started with a clean environment, a working directory, resource
//! limits and, unless the user granted network access, no network) and over Streamable
//! HTTP. The server's tools become the skill's tools, named `<skill>__<tool>`.

use crate::setup::SkillSetupError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;
use troupe_actors::skill::{
    Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest, SkillTool,
};

/// The environment variables a stdio server inherits from Troupe; everything else it gets
/// only from its `env`.
const INHERITED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Limits on a stdio server process (applied with `prlimit`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Address space, in MiB.
    pub max_memory_mb: Option<u64>,
    /// CPU time, in seconds.
    pub max_cpu_secs: Option<u64>,
    /// Open files.
    pub max_open_files: Option<u64>,
}

/// How to reach the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McpTransport {
    Stdio {
        /// Program and arguments.
        command: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
        limits: ProcessLimits,
        /// Run inside a new, empty network namespace (no network at all).
        isolate_network: bool,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

type Client = RunningService<RoleClient, ()>;

/// One configured MCP server.
pub struct McpSkill {
    name: String,
    transport: McpTransport,
    /// The live session, opened on the first manifest read and again after it is lost.
    client: Mutex<Option<Arc<Client>>>,
}

fn unavailable(message: impl Into<String>) -> SkillError {
    SkillError::new(SkillErrorCode::Unavailable, message)
}

impl McpSkill {
    pub fn new(name: &str, transport: McpTransport) -> Result<Self, SkillSetupError> {
        if let McpTransport::Stdio {
            command,
            isolate_network,
            ..
        } = &transport
        {
            if command.is_empty() {
                return Err(SkillSetupError::NoCommand);
            }
            if *isolate_network {
                check_network_isolation()?;
            }
        }
        Ok(Self {
            name: name.to_owned(),
            transport,
            client: Mutex::new(None),
        })
    }

    /// The wrapped command line: `unshare` for the network, `prlimit` for the limits.
    fn command_line(
        command: &[String],
        limits: &ProcessLimits,
        isolate_network: bool,
    ) -> Vec<String> {
        let mut line = Vec::new();
        if isolate_network {
            line.extend(["unshare", "--net", "--map-root-user", "--"].map(String::from));
        }
        let mut limit_flags = Vec::new();
        if let Some(mb) = limits.max_memory_mb {
            limit_flags.push(format!("--as={}", mb * 1024 * 1024));
        }
        if let Some(secs) = limits.max_cpu_secs {
            limit_flags.push(format!("--cpu={secs}"));
        }
        if let Some(files) = limits.max_open_files {
            limit_flags.push(format!("--nofile={files}"));
        }
        if !limit_flags.is_empty() {
            line.push("prlimit".into());
            line.extend(limit_flags);
            line.push("--".into());
        }
        line.extend(command.iter().cloned());
        line
    }

    async fn connect(&self) -> Result<Client, SkillError> {
        let connected = match &self.transport {
            McpTransport::Stdio {
                command,
                env,
                cwd,
                limits,
                isolate_network,
            } => {
                let line = Self::command_line(command, limits, *isolate_network);
                let mut process = tokio::process::Command::new(&line[0]);
                process.args(&line[1..]).env_clear().kill_on_drop(true);
                for name in INHERITED_ENV {
                    if let Ok(value) = std::env::var(name) {
                        process.env(name, value);
                    }
                }
                process.envs(env);
                if let Some(cwd) = cwd {
                    process.current_dir(cwd);
                }
                let (transport, stderr) = TokioChildProcess::builder(process)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|error| unavailable(format!("cannot start `{}`: {error}", line[0])))?;
                if let Some(stderr) = stderr {
                    forward_stderr(self.name.clone(), stderr);
                }
                ().serve(transport).await
            }
            McpTransport::Http { url, headers } => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                for (name, value) in headers {
                    let (Ok(name), Ok(value)) = (
                        reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                        reqwest::header::HeaderValue::from_str(value),
                    ) else {
                        return Err(SkillError::failed(format!("header `{name}` is not valid")));
                    };
                    config.custom_headers.insert(name, value);
                }
                let transport =
                    StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
                ().serve(transport).await
            }
        };
        connected
            .map_err(|error| unavailable(format!("the MCP server did not initialize: {error}")))
    }

    /// The live session, opening one if there is none (or the last one closed).
    async fn session(&self) -> Result<Arc<Client>, SkillError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref()
            && !client.is_closed()
        {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.connect().await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn drop_session(&self) {
        if let Some(client) = self.client.lock().await.take() {
            client.cancellation_token().cancel();
        }
    }
}

/// Logs what a stdio server writes to stderr (its own diagnostics).
fn forward_stderr(name: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(skill = %name, "mcp stderr: {line}");
        }
    });
}

/// Whether this host can run a process without network (user namespaces).
fn check_network_isolation() -> Result<(), SkillSetupError> {
    let probe = std::process::Command::new("unshare")
        .args(["--net", "--map-root-user", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => Ok(()),
        _ => Err(SkillSetupError::NoNetworkIsolation),
    }
}

/// An MCP tool as a skill's tool: the model sees its name, description and input schema.
pub(crate) fn skill_tool(tool: rmcp::model::Tool) -> SkillTool {
    SkillTool {
        name: tool.name.to_string(),
        description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
        parameters: Value::Object((*tool.input_schema).clone()),
        confirm: false,
    }
}

/// What the model reads from a tool result: the structured content when there is some,
/// else the text blocks joined (other blocks are described).
pub(crate) fn result_value(result: &CallToolResult) -> Value {
    if let Some(structured) = &result.structured_content {
        return structured.clone();
    }
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block.as_text() {
            Some(text) => text.text.clone(),
            None => format!(
                "[{} content]",
                serde_json::to_value(block)
                    .ok()
                    .and_then(|value| value["type"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "other".into())
            ),
        })
        .collect();
    Value::String(parts.join("\n"))
}

#[async_trait::async_trait]
impl Skill for McpSkill {
    fn kind(&self) -> &'static str {
        "mcp"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        let client = self.session().await?;
        let tools = match client.list_all_tools().await {
            Ok(tools) => tools,
            Err(error) => {
                self.drop_session().await;
                return Err(unavailable(format!("tools/list failed: {error}")));
            }
        };
        let info = client.peer_info();
        let (name, version, description) = info
            .as_ref()
            .map(|info| {
                let (name, version) = info
                    .server_info
                    .as_ref()
                    .map(|server| (server.name.clone(), server.version.clone()))
                    .unwrap_or_default();
                (name, version, info.instructions.clone().unwrap_or_default())
            })
            .unwrap_or_default();
        Ok(SkillManifest {
            name: if name.is_empty() {
                self.name.clone()
            } else {
                name
            },
            description,
            version,
            tools: tools.into_iter().map(skill_tool).collect(),
            permissions: Default::default(),
        })
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let client = self.session().await?;
        let arguments = match call.arguments {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            _ => return Err(SkillError::invalid("the arguments must be a JSON object")),
        };
        let params = CallToolRequestParams::new(call.action).with_arguments(arguments);
        let result = match client.call_tool(params).await {
            Ok(result) => result,
            Err(error) => {
                if client.is_closed() {
                    self.drop_session().await;
                    return Err(unavailable(format!("the MCP server went away: {error}")));
                }
                return Err(SkillError::failed(format!("the MCP call failed: {error}")));
            }
        };
        let value = result_value(&result);
        if result.is_error == Some(true) {
            let message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            return Err(SkillError::failed(message));
        }
        Ok(value)
    }

    async fn close(&self) {
        self.drop_session().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_the_command_with_isolation_and_limits() {
        let limits = ProcessLimits {
            max_memory_mb: Some(512),
            max_cpu_secs: None,
            max_open_files: Some(64),
        };
        let line = McpSkill::command_line(&["node".into(), "server.js".into()], &limits, true);
        assert_eq!(
            line,
            [
                "unshare",
                "--net",
                "--map-root-user",
                "--",
                "prlimit",
                "--as=536870912",
                "--nofile=64",
                "--",
                "node",
                "server.js"
            ]
        );
        let plain = McpSkill::command_line(&["srv".into()], &ProcessLimits::default(), false);
        assert_eq!(plain, ["srv"]);
    }
}
