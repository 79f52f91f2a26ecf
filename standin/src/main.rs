//! `ess-standin`: a test stand-in for a Synapse process (or any ESS service). It answers
//! every request with a description of that request, so a test can see which server a
//! proxy chose and what it forwarded.

#![forbid(unsafe_code)]

mod answer;
mod chown;
mod controls;
mod serve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

    /// A file the service needs to read (its configuration, a key): exit with an error at
    /// start when it cannot, as the real service would; repeatable.
    #[arg(long = "require-readable", value_name = "FILE")]
    require_readable: Vec<PathBuf>,

    /// A directory the service needs to write (its data volume): exit with an error at
    /// start when a file cannot be created there; repeatable.
    #[arg(long = "require-writable", value_name = "DIR")]
    require_writable: Vec<PathBuf>,
}

fn main() -> ExitCode {
    // Installed as /bin/chown too, standing in for the image's own chown.
    let mut argv = std::env::args_os();
    let invoked_as = argv.next().map(PathBuf::from);
    if invoked_as.as_deref().and_then(Path::file_name) == Some("chown".as_ref()) {
        return match chown::run(argv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("chown: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    if let Err(error) = check_access(&args) {
        eprintln!("ess-standin: error: {error}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ess-standin: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The `--require-*` checks, as the user the stand-in runs as.
fn check_access(args: &Args) -> Result<(), String> {
    for file in &args.require_readable {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    }
    for dir in &args.require_writable {
        let probe = dir.join(format!(".ess-standin-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    }
    Ok(())
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
