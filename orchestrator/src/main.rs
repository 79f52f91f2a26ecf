//! The `essctl` command line: parses arguments, runs one verb of the library, prints the
//! result to stdout and any error as one line on stderr.
#![forbid(unsafe_code)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use essctl::deployment::Deployment;
use essctl::docker::verbs::{self, ProjectArgs, UpArgs};
use essctl::secret_source::Resolver;
use essctl::vault::VaultSession;
use essctl::{render, secrets, stack};

/// Element Server Suite on one Docker host.
#[derive(Parser)]
#[command(name = "essctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a deployment file and report what it describes.
    Check {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Generate missing secrets and fetch the external ones; report each by name.
    Secrets {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Write every service's configuration under DIR (the secrets must exist).
    Render {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show what `up` would do per container; exit 2 when something would change.
    Plan {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Bring the stack up, or change it to match the deployment file.
    Up {
        #[command(flatten)]
        project: ProjectArgs,
        #[command(flatten)]
        up: UpArgs,
    },
    /// Each service's container, state, readiness, image and published ports.
    Status {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// A service's container log.
    Logs {
        /// Project name (compose's project).
        #[arg(long, short, env = "ESSCTL_PROJECT", default_value = "ess")]
        project: String,
        /// Keep following the log.
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        service: String,
    },
    /// Change the number of federation readers: `scale federation-reader=N`.
    Scale {
        #[command(flatten)]
        project: ProjectArgs,
        #[command(flatten)]
        up: UpArgs,
        #[arg(value_name = "federation-reader=N")]
        spec: String,
    },
    /// Remove the stack's containers and network; volumes and secrets stay.
    Down {
        /// Project name (compose's project).
        #[arg(long, short, env = "ESSCTL_PROJECT", default_value = "ess")]
        project: String,
        /// Remove the named volumes too (the database!).
        #[arg(long)]
        volumes: bool,
    },
    /// Write the stack in another format.
    Export {
        #[command(subcommand)]
        format: ExportFormat,
    },
    /// Administration tasks in the running stack.
    Admin {
        #[command(subcommand)]
        task: AdminTask,
    },
    /// The post-deploy checks: one line each, exit 1 when any fails.
    Verify {
        #[command(flatten)]
        project: ProjectArgs,
    },
}

#[derive(Subcommand)]
enum ExportFormat {
    /// A docker compose file equivalent to what `up` creates, on stdout.
    Compose {
        #[command(flatten)]
        project: ProjectArgs,
    },
}

#[derive(Subcommand)]
enum AdminTask {
    /// Register USER as an administrator through mas-cli; the password goes to the secrets
    /// directory.
    Create {
        #[command(flatten)]
        project: ProjectArgs,
        user: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Libraries (vaultrs, rustify) log every failed request at ERROR; essctl reports the
    // failure itself, once, so only its own warnings show unless ESSCTL_LOG asks for more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESSCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("essctl=warn")),
        )
        .init();

    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("essctl: error: {}", chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn Error + Send + Sync>;

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Check { config } => check(&config),
        Command::Secrets { config } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(secrets_verb(&config))
        }
        Command::Render { config, out } => render_verb(&config, &out),
        Command::Plan { project } => {
            if docker_runtime()?.block_on(verbs::plan(&project))? {
                // Exit status 2: the plan has changes (like `terraform plan -detailed-exitcode`).
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Up { project, up } => {
            docker_runtime()?.block_on(verbs::up(&project.project(), &up))
        }
        Command::Status { project } => docker_runtime()?.block_on(verbs::status(&project)),
        Command::Logs {
            project,
            follow,
            tail,
            service,
        } => docker_runtime()?.block_on(verbs::logs(&project, &service, follow, tail)),
        Command::Scale { project, up, spec } => {
            docker_runtime()?.block_on(verbs::scale(&project, &spec, &up))
        }
        Command::Down { project, volumes } => {
            docker_runtime()?.block_on(verbs::down(&project, volumes))
        }
        Command::Export {
            format: ExportFormat::Compose { project },
        } => docker_runtime()?.block_on(verbs::export_compose(&project)),
        Command::Admin {
            task: AdminTask::Create { project, user },
        } => docker_runtime()?.block_on(verbs::admin_create(&project, &user)),
        Command::Verify { project } => docker_runtime()?.block_on(verbs::verify(&project)),
    }
}

/// The Docker verbs run the services of one stage in parallel.
fn docker_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn check(config: &Path) -> Result<(), Failure> {
    let d = Deployment::load(config)?;
    let services = stack::services(&d);
    println!(
        "{}: ok: {} edition, server name {}, {} federation reader(s), {} services",
        config.display(),
        d.edition.as_str(),
        d.server_name,
        d.synapse.federation_readers,
        services.len()
    );
    Ok(())
}

async fn secrets_verb(config: &Path) -> Result<(), Failure> {
    let d = Deployment::load(config)?;

    let mut session = match &d.vault {
        Some(settings) if d.uses_vault() => {
            Some(VaultSession::connect(settings, |name| std::env::var(name).ok()).await?)
        }
        _ => None,
    };

    let mut report = secrets::ensure_generated(d.secrets_dir())?;
    let mut resolver = Resolver::new(session.as_mut());
    report.extend(secrets::fetch_external(&d, &mut resolver).await?);
    for line in report {
        println!("{line}");
    }
    Ok(())
}

fn render_verb(config: &Path, out: &Path) -> Result<(), Failure> {
    let d = Deployment::load(config)?;
    let rendered = render::render(&d)?;
    let written = rendered.write(out)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `cause: cause: cause` on one line, from the outermost error inwards.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace('\n', " ")
}
