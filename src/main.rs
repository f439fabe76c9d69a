//! `troupe`: the binary. It parses the command line and hands it to the library.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use troupe::Cli;

/// jemalloc rather than glibc's malloc: with its background thread it hands pages freed
/// after a burst back to the system within seconds, where glibc kept them (10,000 canvas
/// rooms opened and closed left a node 9 MiB larger for good; see docs/benchmarks.md).
/// `_RJEM_MALLOC_CONF` in the environment tunes it (fewer arenas were tried: see
/// docs/benchmarks.md, "Memory comes back").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("warning: freed memory is returned only as memory is allocated: {error}");
    }
    let process_start = Instant::now();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(troupe::run(cli, process_start)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
