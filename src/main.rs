//! `troupe`: the binary. It parses the command line and hands it to the library.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use troupe::Cli;

fn main() -> ExitCode {
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
