//! `ess-standin`: a test stand-in for a Synapse process (or any ESS service). It answers
//! every request with a description of that request, so a test can see which server a
//! proxy chose and what it forwarded.

#![forbid(unsafe_code)]

mod answer;
mod controls;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::answer::Standin;
use crate::serve::Role;

/// Test stand-in for ESS services: identity and health answers on the given addresses.
#[derive(Debug, Parser)]
#[command(name = "ess-standin", version)]
struct Args {
    /// Reported as `server` in every identity answer, so a test sees who answered.
    #[arg(long)]
    name: String,

    /// Address serving identity answers (and /health, /_standin/*); repeatable.
    #[arg(long = "listen", value_name = "ADDR", required = true)]
    listen: Vec<SocketAddr>,

    /// Address serving only /health and /_standin/*; repeatable.
    #[arg(long = "health-listen", value_name = "ADDR")]
    health_listen: Vec<SocketAddr>,

    /// Worker threads; 1 runs everything on the main thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,

    /// Answer a small constant body instead of the identity JSON, for load benchmarks.
    #[arg(long)]
    fixed_body: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ess-standin: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.threads))
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;

    let standin = Arc::new(Standin::new(args.name, args.fixed_body));
    // Identity addresses first, then health ones: tests that bind port 0 read the
    // `listening on` lines in this order.
    let addrs = args
        .listen
        .into_iter()
        .map(|addr| (addr, Role::Identity))
        .chain(
            args.health_listen
                .into_iter()
                .map(|addr| (addr, Role::Health)),
        )
        .collect();

    runtime.block_on(serve::serve(standin, addrs))
}
