//! The desired state: one container specification per service of the stack, with its mounts,
//! networks, ports, labels (compose's, Traefik's, ours) and the three hashes that tell what
//! changed since a container was created: its configuration, its secrets, its settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::overrides::{substitute, Overrides, Probe, Publish};
use crate::deployment::Deployment;
use crate::images::Component;
use crate::render::Rendered;
use crate::secrets::{self, MissingSecret};
use crate::stack::{self, Service};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";
pub const HASH_CONFIG_LABEL: &str = "io.element.ess.hash.configuration";
pub const HASH_SECRETS_LABEL: &str = "io.element.ess.hash.secrets";
pub const HASH_SETTINGS_LABEL: &str = "io.element.ess.hash.settings";
pub const STAGE_LABEL: &str = "io.element.ess.stage";

pub use crate::stack::FEDERATION_READERS_ALIAS;
/// The one-off container that migrates MAS's database before MAS starts.
pub const MAS_MIGRATE: &str = "mas-migrate";

/// A named volume and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    pub volume: String,
    pub target: String,
}

/// A file of the host bind-mounted read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMount {
    pub source: PathBuf,
    pub target: String,
}

/// What a container's labels record about its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hashes {
    pub configuration: String,
    pub secrets: String,
    pub settings: String,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    pub service: String,
    pub container: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub files: Vec<FileMount>,
    pub secrets: Vec<FileMount>,
    pub volumes: Vec<VolumeMount>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    /// `uid:gid` the process runs as.
    pub user: String,
    /// Supplementary groups: the secrets group, which owns the mounted secret files.
    pub group_add: Vec<String>,
    /// Names other containers reach it by on the project network.
    pub aliases: Vec<String>,
    /// Also attached to the front proxy's network.
    pub public: bool,
    pub publish: Vec<Publish>,
    pub labels: BTreeMap<String, String>,
    pub probe: Probe,
    pub stage: u8,
    pub restart: bool,
    #[serde(skip)]
    pub hashes: Hashes,
}

impl ContainerSpec {
    /// The numeric user and group of [`ContainerSpec::user`].
    pub fn owner(&self) -> Option<(u32, u32)> {
        let (uid, gid) = self.user.split_once(':')?;
        Some((uid.parse().ok()?, gid.parse().ok()?))
    }
}

/// The whole desired state of a project.
#[derive(Debug, Clone)]
pub struct Desired {
    pub project: String,
    pub network: String,
    pub front_network: String,
    pub volumes: Vec<String>,
    pub containers: Vec<ContainerSpec>,
    /// Run once, to completion, before MAS is (re)created.
    pub mas_migrate: Option<ContainerSpec>,
}

/// The project network's name, as docker compose would call it.
pub fn network_name(project: &str) -> String {
    format!("{project}_default")
}

pub fn container_name(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

fn volume_name(project: &str, volume: &str) -> String {
    format!("{project}_{volume}")
}

/// The named volumes of a service: the data that outlives its containers.
fn volumes_of(project: &str, service: &str) -> Vec<VolumeMount> {
    let (volume, target) = match service {
        stack::POSTGRES => ("postgres-data", "/var/lib/postgresql/data"),
        stack::SYNAPSE_MAIN => ("synapse-media", "/media"),
        _ => return vec![],
    };
    vec![VolumeMount {
        volume: volume_name(project, volume),
        target: target.into(),
    }]
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Inputs of [`desired`].
pub struct Inputs<'a> {
    pub project: &'a str,
    pub deployment: &'a Deployment,
    pub deployment_path: &'a Path,
    pub rendered: &'a Rendered,
    /// Where the rendered files are written (one folder per service).
    pub rendered_dir: &'a Path,
    pub overrides: &'a Overrides,
}

/// Builds the desired state. Reads the secret files to hash them.
pub fn desired(inputs: &Inputs<'_>) -> Result<Desired, MissingSecret> {
    let d = inputs.deployment;
    let project = inputs.project;
    let network = network_name(project);
    let mut containers = Vec::new();
    let mut volumes = Vec::new();
    let mut mas_migrate = None;

    for service in stack::services(d) {
        let spec = container(inputs, &service, &service.name, service.command.clone())?;
        for v in &spec.volumes {
            volumes.push(v.volume.clone());
        }
        if service.name == stack::MAS {
            let command = ["database", "migrate", "--config", "/conf/config.yaml"]
                .map(String::from)
                .to_vec();
            let mut migrate = container(inputs, &service, MAS_MIGRATE, command)?;
            migrate.aliases.clear();
            migrate.public = false;
            migrate.restart = false;
            migrate.labels.retain(|k, _| !k.starts_with("traefik."));
            migrate.labels.insert(ONEOFF_LABEL.into(), "True".into());
            mas_migrate = Some(migrate);
        }
        containers.push(spec);
    }
    Ok(Desired {
        project: project.to_owned(),
        network,
        front_network: d.front_proxy.network.to_string(),
        volumes,
        containers,
        mas_migrate,
    })
}

fn container(
    inputs: &Inputs<'_>,
    service: &Service,
    name: &str,
    command: Vec<String>,
) -> Result<ContainerSpec, MissingSecret> {
    let d = inputs.deployment;
    let project = inputs.project;
    let over = inputs.overrides.get(name, Some(service.component));
    let empty = crate::render::ServiceConfig::default();
    let config = inputs.rendered.service(&service.name).unwrap_or(&empty);

    let files = config
        .files
        .iter()
        .map(|f| FileMount {
            source: inputs.rendered_dir.join(&service.name).join(&f.name),
            target: f.mount.clone(),
        })
        .collect();
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let secret_mounts = service
        .secrets
        .iter()
        .map(|s| FileMount {
            source: d.secrets_dir().join(s.as_str()),
            target: s.container_path(),
        })
        .collect();

    let mut aliases = vec![name.to_owned()];
    if service.component == Component::FederationReader {
        aliases.push(FEDERATION_READERS_ALIAS.into());
    }
    let publish = match over.and_then(|o| o.publish.clone()) {
        Some(list) => list,
        None => service
            .host_ports
            .iter()
            .map(|p| Publish::same_port(p.port, p.protocol))
            .collect(),
    };
    let probe = match over.and_then(|o| o.readiness.as_ref()) {
        Some(r) => Probe::from(r),
        None => Probe::from(&service.readiness),
    };
    let command = match over.and_then(|o| o.command.as_ref()) {
        Some(c) => substitute(c, name),
        None => command,
    };
    let entrypoint = over
        .and_then(|o| o.entrypoint.as_ref())
        .map(|e| substitute(e, name));
    // The router's image is made for a read-only root; the others are left as their
    // images expect.
    let read_only = service.component == Component::Router;
    let tmpfs = if read_only {
        vec!["/tmp".into()]
    } else {
        vec![]
    };

    let (uid, gid) = service.component.user();

    let mut labels = BTreeMap::new();
    labels.insert(PROJECT_LABEL.into(), project.to_owned());
    labels.insert(SERVICE_LABEL.into(), name.to_owned());
    labels.insert("com.docker.compose.container-number".into(), "1".into());
    labels.insert(ONEOFF_LABEL.into(), "False".into());
    labels.insert(
        "com.docker.compose.project.config_files".into(),
        inputs.deployment_path.display().to_string(),
    );
    if let Some(dir) = inputs.deployment_path.parent() {
        labels.insert(
            "com.docker.compose.project.working_dir".into(),
            dir.display().to_string(),
        );
    }
    labels.insert(STAGE_LABEL.into(), service.stage.to_string());
    if !service.routes.is_empty() {
        traefik_labels(&mut labels, d, project, name, service);
    }

    let mut spec = ContainerSpec {
        service: name.to_owned(),
        container: container_name(project, name),
        image: service.image.to_string(),
        entrypoint,
        command,
        env,
        files,
        secrets: secret_mounts,
        volumes: volumes_of(project, name),
        tmpfs,
        read_only,
        user: format!("{uid}:{gid}"),
        group_add: vec![d.secrets.group.to_string()],
        aliases,
        public: !service.routes.is_empty(),
        publish,
        labels,
        probe,
        stage: service.stage,
        restart: true,
        hashes: Hashes::default(),
    };

    let mut config_parts: Vec<&[u8]> = Vec::new();
    for f in &config.files {
        config_parts.extend([f.name.as_bytes(), f.mount.as_bytes(), &f.contents]);
    }
    for e in &spec.env {
        config_parts.push(e.as_bytes());
    }
    let mut secret_values = Vec::new();
    for s in &service.secrets {
        secret_values.push((s.as_str(), secrets::read(d.secrets_dir(), *s)?));
    }
    let mut secret_parts: Vec<&[u8]> = Vec::new();
    for (n, v) in &secret_values {
        secret_parts.extend([n.as_bytes(), v.as_slice()]);
    }
    let settings = serde_json::to_vec(&spec).unwrap_or_default();
    spec.hashes = Hashes {
        configuration: sha256_hex(&config_parts),
        secrets: sha256_hex(&secret_parts),
        settings: sha256_hex(&[&settings]),
    };
    let combined = sha256_hex(&[
        spec.hashes.configuration.as_bytes(),
        spec.hashes.secrets.as_bytes(),
        spec.hashes.settings.as_bytes(),
    ]);
    spec.labels.insert(CONFIG_HASH_LABEL.into(), combined);
    spec.labels
        .insert(HASH_CONFIG_LABEL.into(), spec.hashes.configuration.clone());
    spec.labels
        .insert(HASH_SECRETS_LABEL.into(), spec.hashes.secrets.clone());
    spec.labels
        .insert(HASH_SETTINGS_LABEL.into(), spec.hashes.settings.clone());
    Ok(spec)
}

/// Traefik's router and service labels for each public route of a service.
fn traefik_labels(
    labels: &mut BTreeMap<String, String>,
    d: &Deployment,
    project: &str,
    name: &str,
    service: &Service,
) {
    labels.insert("traefik.enable".into(), "true".into());
    labels.insert(
        "traefik.docker.network".into(),
        d.front_proxy.network.to_string(),
    );
    for (i, route) in service.routes.iter().enumerate() {
        let id = format!("{project}-{name}-{i}");
        let mut rule = format!("Host(`{}`)", route.host);
        if !route.path_prefixes.is_empty() {
            let prefixes: Vec<String> = route
                .path_prefixes
                .iter()
                .map(|p| format!("PathPrefix(`{p}`)"))
                .collect();
            rule = format!("{rule} && ({})", prefixes.join(" || "));
        }
        let router = format!("traefik.http.routers.{id}");
        labels.insert(format!("{router}.rule"), rule);
        labels.insert(
            format!("{router}.entrypoints"),
            d.front_proxy.entrypoint.to_string(),
        );
        labels.insert(format!("{router}.tls"), "true".into());
        if let Some(resolver) = &d.front_proxy.cert_resolver {
            labels.insert(format!("{router}.tls.certresolver"), resolver.to_string());
        }
        labels.insert(format!("{router}.service"), id.clone());
        labels.insert(
            format!("traefik.http.services.{id}.loadbalancer.server.port"),
            route.port.to_string(),
        );
    }
}
