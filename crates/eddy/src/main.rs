//! The `eddy` binary: `serve` (default), `loadgen`, and admin commands (`tenants`, `keys`)
//! that talk to a running server's admin API.

mod admin;
mod compose;
mod config;
#[cfg(test)]
mod layering;
mod loadgen;
mod serve;

use clap::Parser;

// Ingest allocates many small, short-lived objects (JSON values, strings, encoded records);
// mimalloc spends measurably less time on them than glibc malloc (docs/benchmarks.md). Built
// with `no_thp`: mimalloc then does not ask for transparent huge pages, whose first touch zeroes
// 2 MiB at a time — 23% of a 10M-row SQL group-by's time went to that, for buffers a query
// fills and frees (docs/benchmarks.md, session 6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = config::Cli::parse();
    let result = match cli.command {
        None => serve::run(cli.serve),
        Some(config::Command::Serve(args)) => serve::run(*args),
        Some(config::Command::Loadgen(args)) => loadgen::run(args),
        Some(config::Command::Tenants(args)) => admin::run_tenants(args),
        Some(config::Command::Keys(args)) => admin::run_keys(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
