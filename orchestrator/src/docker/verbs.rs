//! The Docker verbs as the command line runs them: arguments in, results on stdout, progress
//! on stderr. `main.rs` only dispatches here.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::client::Engine;
use super::plan::{self, Plan};
use super::prepare::{prepare, Prepared, Project, SecretsStep};
use super::pull::{ensure_images, PullPolicy};
use super::up::{apply, UpOptions};
use super::{access, down, logs, status};
use crate::secret_source::Resolver;
use crate::vault::VaultSession;

type Failure = Box<dyn Error + Send + Sync>;

/// The arguments every Docker verb shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectArgs {
    /// The deployment file.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Project name: prefix of containers, networks and volumes (compose's project).
    #[arg(long, short, env = "ESSCTL_PROJECT", default_value = "ess")]
    pub project: String,
    /// Per-service overrides of command, readiness and published ports.
    #[arg(long, env = "ESSCTL_OVERRIDES", value_name = "FILE")]
    pub overrides: Option<PathBuf>,
    /// Where the rendered files the containers mount are written
    /// (default: rendered/<project> beside the deployment file).
    #[arg(long, value_name = "DIR")]
    pub rendered: Option<PathBuf>,
}

impl ProjectArgs {
    pub fn project(&self) -> Project {
        Project::new(
            &self.project,
            &self.config,
            self.overrides.as_deref(),
            self.rendered.as_deref(),
        )
    }
}

/// Options of `up` (and `scale`).
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// When to pull images.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Seconds each service may take to become ready.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

/// `essctl plan`: prints the plan; true when something would change.
pub async fn plan(args: &ProjectArgs) -> Result<bool, Failure> {
    let prepared = prepare(&args.project(), SecretsStep::ReadOnly).await?;
    let engine = Engine::connect().await?;
    let plan = plan::plan(&engine, &prepared.desired).await?;
    for line in plan.lines() {
        println!("{line}");
    }
    Ok(plan.changes())
}

/// `essctl up` (and `scale`, with another reader count): converges, prints what changed.
pub async fn up(project: &Project, options: &UpArgs) -> Result<(), Failure> {
    tokio::select! {
        result = up_inner(project, options) => result,
        _ = tokio::signal::ctrl_c() => Err(
            "interrupted; run `essctl up` again to converge (nothing is left half-made)".into()
        ),
    }
}

async fn up_inner(project: &Project, options: &UpArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let prepared = prepare(project, SecretsStep::Ensure).await?;
    let engine = Engine::connect().await?;
    let mut plan = plan::plan(&engine, &prepared.desired).await?;

    let pulled = pull_images(&engine, &prepared, &plan, options.pull).await?;
    if !pulled.is_empty() {
        // A pulled tag may point to a new image: compare again.
        plan = plan::plan(&engine, &prepared.desired).await?;
    }
    if plan.changes() {
        prepared.rendered.write(&project.rendered_dir)?;
        access::share_with_containers(&prepared.desired, prepared.deployment.secrets.group)?;
    }

    let report = apply(
        &engine,
        &prepared.desired,
        &plan,
        &UpOptions {
            ready_timeout: Duration::from_secs(options.timeout),
        },
    )
    .await?;
    for line in &report.lines {
        println!("{line}");
    }
    if report.lines.is_empty() {
        println!("unchanged: {} containers", plan.steps.len());
    }
    eprintln!("up: done in {:.1?}", started.elapsed());
    Ok(())
}

async fn pull_images(
    engine: &Engine,
    prepared: &Prepared,
    plan: &Plan,
    policy: PullPolicy,
) -> Result<Vec<String>, Failure> {
    let d = &prepared.deployment;
    let needs_vault = d
        .registries
        .iter()
        .any(|r| r.username.is_vault() || r.password.is_vault());
    let wants_pull = policy == PullPolicy::Always || plan.images.values().any(Option::is_none);
    let mut session = match &d.vault {
        Some(settings) if needs_vault && wants_pull => {
            Some(VaultSession::connect(settings, |name| std::env::var(name).ok()).await?)
        }
        _ => None,
    };
    let mut resolver = Resolver::new(session.as_mut());
    ensure_images(engine, d, &plan.images, policy, &mut resolver).await
}

/// `essctl status`.
pub async fn status(args: &ProjectArgs) -> Result<(), Failure> {
    let prepared = prepare(&args.project(), SecretsStep::ReadOnly).await?;
    let engine = Engine::connect().await?;
    let rows = status::status(&engine, &prepared.desired).await?;
    for line in status::table(&rows) {
        println!("{line}");
    }
    Ok(())
}

/// `essctl logs SERVICE`.
pub async fn logs(
    project: &str,
    service: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    logs::logs(&engine, project, service, follow, tail).await?;
    Ok(())
}

/// `essctl down [--volumes]`.
pub async fn down(project: &str, volumes: bool) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    for line in down::down(&engine, project, volumes).await? {
        println!("{line}");
    }
    Ok(())
}

/// `essctl scale federation-reader=N`: `up` with N readers. Only readers are created or
/// removed: the router finds them through the readers' shared DNS name.
pub async fn scale(args: &ProjectArgs, spec: &str, options: &UpArgs) -> Result<(), Failure> {
    let (what, count) = spec
        .split_once('=')
        .ok_or_else(|| format!("expected SERVICE=N, got {spec:?}"))?;
    if !matches!(
        what,
        "federation-reader" | "federation_reader" | "federation-readers"
    ) {
        return Err(format!("only federation-reader can be scaled, not {what:?}").into());
    }
    let count: u8 = count
        .parse()
        .ok()
        .filter(|n| *n <= 16)
        .ok_or_else(|| format!("expected a number of readers from 0 to 16, got {count:?}"))?;
    let mut project = args.project();
    project.federation_readers = Some(count);
    up(&project, options).await
}

/// `essctl export compose`: the compose file on stdout.
pub async fn export_compose(args: &ProjectArgs) -> Result<(), Failure> {
    let prepared = prepare(&args.project(), SecretsStep::ReadOnly).await?;
    print!("{}", super::compose::export(&prepared.desired)?);
    Ok(())
}

/// `essctl admin create USER`: prints where the password is, never the password.
pub async fn admin_create(args: &ProjectArgs, user: &str) -> Result<(), Failure> {
    let prepared = prepare(&args.project(), SecretsStep::ReadOnly).await?;
    let engine = Engine::connect().await?;
    let path = super::admin::create(&engine, &prepared.deployment, &args.project, user).await?;
    println!(
        "{user}: created as administrator; password in {}",
        path.display()
    );
    Ok(())
}

/// `essctl verify`: one line per check; fails when any check failed.
pub async fn verify(args: &ProjectArgs) -> Result<(), Failure> {
    let prepared = prepare(&args.project(), SecretsStep::ReadOnly).await?;
    let engine = Engine::connect().await?;
    let checks = super::verify::verify(&engine, &prepared.deployment, &prepared.desired).await;
    for check in &checks {
        println!("{}", check.line());
    }
    let failed = checks.iter().filter(|c| c.result.is_err()).count();
    if failed > 0 {
        return Err(format!("{failed} of {} checks failed", checks.len()).into());
    }
    Ok(())
}
