//! `ess-router`: check a configuration file, or serve with it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ess_router::config::Settings;
use ess_router::server::{self, ProcessOptions};
use pingora::server::RunArgs;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ess-router",
    version,
    about = "Edge router for Element Server Suite"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listening sockets over from a running ess-router, which is then told to
        /// stop with SIGQUIT.
        #[arg(long)]
        upgrade: bool,
        /// Where the running process hands its sockets over during an upgrade.
        #[arg(long, default_value = "/tmp/ess-router.upgrade.sock")]
        upgrade_sock: PathBuf,
        #[arg(long, default_value = "/tmp/ess-router.pid")]
        pid_file: PathBuf,
        /// Reload when the configuration file changes (SIGHUP always reloads).
        #[arg(long)]
        watch_config: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Settings::load(&config) {
            Ok(settings) => {
                println!("{}: ok ({} pools)", config.display(), settings.pools.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ess-router: error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            upgrade,
            upgrade_sock,
            pid_file,
            watch_config,
        } => {
            let settings = match Settings::load(&config) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("ess-router: error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            ess_router::logging::init();
            let process = ProcessOptions {
                upgrade,
                upgrade_sock,
                pid_file,
                watch_config,
            };
            match server::build(settings, &process) {
                Ok(server) => server.run(RunArgs::default()),
                Err(e) => {
                    eprintln!("ess-router: error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            // The requests answered in the last moments before the exit keep their lines.
            ess_router::access_log::flush();
            ExitCode::SUCCESS
        }
    }
}
