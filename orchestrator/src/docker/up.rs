//! `essctl up`: networks, volumes, images, then the containers stage by stage (every service
//! of a stage ready before the next starts, the services of one stage in parallel). Only what
//! the plan marks is touched, so a second run changes nothing and an interrupted run is
//! finished by the next.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::future::try_join_all;

use super::client::{api, is_conflict, is_not_found, DockerError, Engine};
use super::plan::{Action, Plan, Step};
use super::probe;
use super::spec::{ContainerSpec, Desired, ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL};
use crate::stack;

/// How long `docker stop` waits before it kills (compose's default).
const STOP_TIMEOUT_SECONDS: i32 = 10;

/// Options of one `up` run.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// How long each service may take to become ready.
    pub ready_timeout: Duration,
}

/// What one `up` run did, per container.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
}

/// Creates the project network (compose labels) and the front proxy's network if missing.
pub async fn ensure_networks(
    engine: &Engine,
    desired: &Desired,
    plan: &Plan,
) -> Result<(), DockerError> {
    for name in &plan.create_networks {
        let mut labels = HashMap::new();
        if *name == desired.network {
            labels.insert(PROJECT_LABEL.to_string(), desired.project.clone());
            labels.insert(
                "com.docker.compose.network".to_string(),
                "default".to_string(),
            );
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        match engine.docker.create_network(request).await {
            Ok(_) => eprintln!("network {name}: created"),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(api(format!("create network {name}"))(e)),
        }
    }
    Ok(())
}

pub async fn ensure_volumes(
    engine: &Engine,
    desired: &Desired,
    plan: &Plan,
) -> Result<(), DockerError> {
    for name in &plan.create_volumes {
        let short = name
            .strip_prefix(&format!("{}_", desired.project))
            .unwrap_or(name);
        let labels = HashMap::from([
            (PROJECT_LABEL.to_string(), desired.project.clone()),
            ("com.docker.compose.volume".to_string(), short.to_string()),
        ]);
        engine
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(api(format!("create volume {name}")))?;
        eprintln!("volume {name}: created");
    }
    Ok(())
}

/// Stops and removes a container; one already gone is fine.
pub async fn remove_container(engine: &Engine, name: &str) -> Result<(), DockerError> {
    let docker = &engine.docker;
    match docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(STOP_TIMEOUT_SECONDS),
                signal: None,
            }),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        // 304: already stopped.
        Err(e) if super::client::status_code(&e) == Some(304) => {}
        Err(e) => return Err(api(format!("stop {name}"))(e)),
    }
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // 409: removal already in progress.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(api(format!("remove {name}"))(e)),
    }
}

fn body(spec: &ContainerSpec, network: &str) -> ContainerCreateBody {
    let mut mounts: Vec<Mount> = spec
        .files
        .iter()
        .chain(&spec.secrets)
        .map(|f| Mount {
            target: Some(f.target.clone()),
            source: Some(f.source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();
    mounts.extend(spec.volumes.iter().map(|v| Mount {
        target: Some(v.target.clone()),
        source: Some(v.volume.clone()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        ..Default::default()
    }));

    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.publish {
        let key = format!("{}/{}", p.port, p.protocol);
        exposed.push(key.clone());
        let host_port = match p.host_port {
            Some(0) => String::new(),
            Some(port) => port.to_string(),
            None => p.port.to_string(),
        };
        port_bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(host_port),
            });
    }
    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|t| (t.clone(), String::new()))
        .collect();

    let endpoint = EndpointSettings {
        aliases: Some(spec.aliases.clone()),
        ..Default::default()
    };
    ContainerCreateBody {
        hostname: Some(spec.service.clone()),
        image: Some(spec.image.clone()),
        user: Some(spec.user.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(spec.env.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            restart_policy: Some(RestartPolicy {
                name: Some(if spec.restart {
                    RestartPolicyNameEnum::UNLESS_STOPPED
                } else {
                    RestartPolicyNameEnum::NO
                }),
                maximum_retry_count: None,
            }),
            readonly_rootfs: Some(spec.read_only),
            group_add: (!spec.group_add.is_empty()).then(|| spec.group_add.clone()),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            network_mode: Some(network.to_owned()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.to_owned(), endpoint)])),
        }),
        ..Default::default()
    }
}

/// Creates and starts a container. A container of that name left by an interrupted run (or
/// anything else) is replaced.
pub async fn create_and_start(
    engine: &Engine,
    desired: &Desired,
    spec: &ContainerSpec,
) -> Result<(), DockerError> {
    let docker = &engine.docker;
    let options = CreateContainerOptions {
        name: Some(spec.container.clone()),
        ..Default::default()
    };
    let created = match docker
        .create_container(Some(options.clone()), body(spec, &desired.network))
        .await
    {
        Err(e) if is_conflict(&e) => {
            remove_container(engine, &spec.container).await?;
            docker
                .create_container(Some(options), body(spec, &desired.network))
                .await
        }
        other => other,
    };
    created.map_err(api(format!("create {}", spec.container)))?;

    if spec.public {
        docker
            .connect_network(
                &desired.front_network,
                NetworkConnectRequest {
                    container: spec.container.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(api(format!(
                "connect {} to {}",
                spec.container, desired.front_network
            )))?;
    }
    start(engine, &spec.container).await
}

async fn start(engine: &Engine, name: &str) -> Result<(), DockerError> {
    match engine.docker.start_container(name, None).await {
        Ok(()) => Ok(()),
        Err(e) if super::client::status_code(&e) == Some(304) => Ok(()),
        Err(e) => Err(api(format!("start {name}"))(e)),
    }
}

/// The one-off that gives a service's named volumes to the user the service runs as: a new
/// volume is root's, and Docker has no fsGroup. Only the volume's top directory changes, so
/// data already there is left as it is. Runs the service's own image as root with its
/// `chown` whenever the service's container is created (not recreated: its volume was given
/// before the container first ran), so a run interrupted in between converges on the next.
pub(super) fn volume_owner(spec: &ContainerSpec) -> ContainerSpec {
    let mut entrypoint = vec!["/bin/chown".to_owned(), spec.user.clone()];
    entrypoint.extend(spec.volumes.iter().map(|v| v.target.clone()));
    let mut labels = spec.labels.clone();
    labels.retain(|k, _| k == PROJECT_LABEL);
    labels.insert(ONEOFF_LABEL.into(), "True".into());
    labels.insert(SERVICE_LABEL.into(), format!("{}-volumes", spec.service));
    ContainerSpec {
        service: format!("{}-volumes", spec.service),
        container: format!("{}-volumes", spec.container),
        entrypoint: Some(entrypoint),
        command: vec![],
        env: vec![],
        files: vec![],
        secrets: vec![],
        tmpfs: vec![],
        read_only: false,
        user: "0:0".into(),
        group_add: vec![],
        aliases: vec![],
        public: false,
        publish: vec![],
        labels,
        restart: false,
        ..spec.clone()
    }
}

/// Runs a one-off container (the MAS migration, a volume's owner) to completion; removes it
/// when it succeeded, leaves it for `docker logs` when it failed.
async fn run_once(
    engine: &Engine,
    desired: &Desired,
    spec: &ContainerSpec,
    what: &str,
    timeout: Duration,
) -> Result<(), DockerError> {
    remove_container(engine, &spec.container).await?;
    create_and_start(engine, desired, spec).await?;
    let started = Instant::now();
    loop {
        let inspect = engine
            .docker
            .inspect_container(&spec.container, None)
            .await
            .map_err(api(format!("inspect {}", spec.container)))?;
        let state = inspect.state.unwrap_or_default();
        if state.running == Some(false) {
            let code = state.exit_code.unwrap_or(-1);
            if code != 0 {
                return Err(DockerError::Command {
                    what: format!("{what} ({})", spec.container),
                    code,
                    output: probe::log_tail(engine, &spec.container, 20).await,
                });
            }
            remove_container(engine, &spec.container).await?;
            eprintln!("{}: done", spec.service);
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(DockerError::NotReady {
                service: spec.service.clone(),
                seconds: timeout.as_secs(),
                probe: "still running".into(),
                logs: probe::log_tail(engine, &spec.container, 20).await,
            });
        }
        // A one-off (a chown, a migration) often ends within a few tens of milliseconds;
        // the inspect is cheap, so look often.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn apply_step(
    engine: &Engine,
    desired: &Desired,
    step: &Step,
    options: &UpOptions,
    wait: bool,
) -> Result<Option<String>, DockerError> {
    let spec = &step.spec;
    let started = Instant::now();
    let touched = step.action != Action::Unchanged;
    if spec.service == stack::MAS && matches!(step.action, Action::Create | Action::Recreate(_)) {
        if let Some(migrate) = &desired.mas_migrate {
            eprintln!("{}: running", migrate.service);
            let what = "the MAS database migration";
            run_once(engine, desired, migrate, what, options.ready_timeout).await?;
        }
    }
    if !spec.volumes.is_empty() && step.action == Action::Create {
        let owner = volume_owner(spec);
        let what = format!("giving {}'s volumes to user {}", spec.service, spec.user);
        run_once(engine, desired, &owner, &what, options.ready_timeout).await?;
    }
    match &step.action {
        Action::Unchanged => {}
        Action::Create => create_and_start(engine, desired, spec).await?,
        Action::Recreate(_) => {
            remove_container(engine, &spec.container).await?;
            create_and_start(engine, desired, spec).await?;
        }
        Action::Start => start(engine, &spec.container).await?,
    }
    if touched {
        eprintln!("{}: {}", spec.service, step.action);
    }
    if wait {
        probe::wait_ready(
            engine,
            &spec.service,
            &spec.container,
            &desired.network,
            &spec.probe,
            options.ready_timeout,
        )
        .await?;
        if touched {
            eprintln!("{}: ready ({:.1?})", spec.service, started.elapsed());
        }
    }
    Ok(touched.then(|| format!("{} ({}): {}", spec.service, spec.container, step.action)))
}

/// Applies a plan. Networks and volumes first, unwanted containers removed, then each stage.
pub async fn apply(
    engine: &Engine,
    desired: &Desired,
    plan: &Plan,
    options: &UpOptions,
) -> Result<Report, DockerError> {
    let mut report = Report::default();
    ensure_networks(engine, desired, plan).await?;
    ensure_volumes(engine, desired, plan).await?;

    for e in &plan.remove {
        remove_container(engine, &e.name).await?;
        eprintln!("{}: removed", e.name);
        report
            .lines
            .push(format!("{} ({}): removed", e.service, e.name));
    }

    let mut stages: Vec<u8> = plan.steps.iter().map(|s| s.spec.stage).collect();
    stages.sort_unstable();
    stages.dedup();
    for stage in stages {
        // Ready before the next stage starts, but only when something here or later changes:
        // a run that changes nothing does not probe.
        let later_change = plan
            .steps
            .iter()
            .any(|s| s.spec.stage >= stage && s.action != Action::Unchanged);
        let steps = plan.steps.iter().filter(|s| s.spec.stage == stage);
        let done = try_join_all(steps.map(|s| {
            let wait = later_change;
            async move { apply_step(engine, desired, s, options, wait).await }
        }))
        .await?;
        report.lines.extend(done.into_iter().flatten());
    }
    Ok(report)
}
