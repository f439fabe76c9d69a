//! `troupe bench`: opens N sessions against a node, sends M messages each, and reports
//! throughput, latency percentiles, errors and (for a local node) the server's memory.
//! `ws://…/ws` drives the WebSocket path; `http://…` drives the OpenAI facade with N users.
//! `troupe bench-canvas` loads canvas rooms ([`canvas`]).

mod canvas;
mod openai;
mod rss;
mod websocket;

use std::process::ExitCode;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cli::BenchArgs;

/// What one session measured.
#[derive(Debug, Default)]
pub(crate) struct SessionOutcome {
    /// Round trips, in microseconds.
    pub(crate) latencies_micros: Vec<u64>,
    /// From sending to the `ack` (the message stored), in microseconds.
    pub(crate) ack_latencies_micros: Vec<u64>,
    /// When the session's last `ack` came, counted from the start of the load.
    pub(crate) last_ack_after: Option<Duration>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.sessions == 0 || args.messages == 0 || args.in_flight == 0 {
        anyhow::bail!("--sessions, --messages and --in-flight must be at least 1");
    }
    if args.embeddings.is_some_and(|texts| texts == 0)
        || (args.embeddings.is_some() && !args.url.starts_with("http"))
    {
        anyhow::bail!("--embeddings takes at least 1 text per request, with an http:// --url");
    }
    if args.ingest && !(args.url.starts_with("ws://") || args.url.starts_with("wss://")) {
        anyhow::bail!("--ingest measures the WebSocket path: give a ws:// or wss:// --url");
    }
    if args
        .rate
        .is_some_and(|rate| rate <= 0.0 || !rate.is_finite())
    {
        anyhow::bail!("--rate must be a positive number of messages per second");
    }
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-file limit: {error}");
    }
    let server_pid = args.server_pid.or_else(|| rss::pid_listening_on(&args.url));
    let report = if args.url.starts_with("ws://") || args.url.starts_with("wss://") {
        websocket::run(&args, server_pid).await?
    } else {
        openai::run(&args, server_pid).await?
    };
    report.print(&args);
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `troupe bench-canvas`.
pub(crate) async fn run_canvas(args: crate::cli::CanvasBenchArgs) -> anyhow::Result<ExitCode> {
    if !(args.rate > 0.0 && args.rate.is_finite()) || args.clients == 0 || args.updates == 0 {
        anyhow::bail!("--rate, --clients and --updates must be positive");
    }
    canvas::run(args).await?;
    Ok(ExitCode::SUCCESS)
}

/// Everything a run measured.
pub(crate) struct Report {
    pub(crate) outcomes: Vec<SessionOutcome>,
    pub(crate) elapsed: Duration,
    pub(crate) connect_time: Duration,
    pub(crate) server_pid: Option<u32>,
    pub(crate) rss_before_connect: Option<u64>,
    pub(crate) rss_idle_connected: Option<u64>,
    pub(crate) rss_after: Option<u64>,
}

fn latency_histogram<'a>(micros: impl Iterator<Item = &'a u64>) -> Histogram<u64> {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid");
    for latency in micros {
        histogram.saturating_record(*latency);
    }
    histogram
}

fn print_latencies(label: &str, histogram: &Histogram<u64>) {
    if histogram.is_empty() {
        return;
    }
    let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{label} p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        millis(0.5),
        millis(0.9),
        millis(0.99),
        histogram.max() as f64 / 1000.0
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Report {
    fn errors(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.errors).sum()
    }

    fn print(&self, args: &BenchArgs) {
        let histogram = latency_histogram(
            self.outcomes
                .iter()
                .flat_map(|outcome| &outcome.latencies_micros),
        );
        let replies = histogram.len();
        let seconds = self.elapsed.as_secs_f64().max(f64::EPSILON);
        println!("target        {}", args.url);
        println!(
            "load          {} sessions x {} messages, {} in flight per session, rate {}",
            args.sessions,
            args.messages,
            args.in_flight,
            args.rate
                .map_or_else(|| "unlimited".into(), |rate| format!("{rate}/s")),
        );
        println!(
            "connect       {} sessions in {:.1} ms",
            self.outcomes.len(),
            self.connect_time.as_secs_f64() * 1000.0
        );
        println!(
            "replies       {replies} in {seconds:.2} s = {:.0} messages/s",
            replies as f64 / seconds
        );
        if let Some(texts) = args.embeddings {
            println!(
                "embeddings    {} texts = {:.0} sentences/s",
                replies * texts as u64,
                (replies * texts as u64) as f64 / seconds
            );
        }
        if args.ingest {
            self.print_ingest();
        }
        println!("errors        {}", self.errors());
        if let Some(error) = self
            .outcomes
            .iter()
            .find_map(|outcome| outcome.first_error.as_ref())
        {
            println!("first error   {error}");
        }
        print_latencies("latency ms   ", &histogram);
        self.print_memory(args);
    }

    /// The durable ingest: how fast messages were stored and acknowledged.
    fn print_ingest(&self) {
        let histogram = latency_histogram(
            self.outcomes
                .iter()
                .flat_map(|outcome| &outcome.ack_latencies_micros),
        );
        let last_ack = self
            .outcomes
            .iter()
            .filter_map(|outcome| outcome.last_ack_after)
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            .max(f64::EPSILON);
        let acks = histogram.len();
        println!(
            "acks          {acks} in {last_ack:.2} s = {:.0} messages/s stored and acknowledged",
            acks as f64 / last_ack
        );
        print_latencies("ack latency  ", &histogram);
    }

    fn print_memory(&self, args: &BenchArgs) {
        let Some(pid) = self.server_pid else {
            println!("server RSS    unknown (not a local node; pass --server-pid)");
            return;
        };
        if let (Some(before), Some(idle)) = (self.rss_before_connect, self.rss_idle_connected) {
            let per_connection = idle.saturating_sub(before) as f64 / args.sessions as f64 / 1024.0;
            println!(
                "server RSS    pid {pid}: {} before connecting, {} with {} idle sessions ({per_connection:.2} KiB each)",
                mib(before),
                mib(idle),
                args.sessions
            );
        }
        if let Some(after) = self.rss_after {
            println!("server RSS    after the run: {}", mib(after));
        }
    }
}
