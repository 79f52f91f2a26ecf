//! `essctl export compose`: the desired state as a docker compose file, for operators who
//! want to read it, and for the benchmark against docker-compose. Readiness cannot be
//! expressed without a HEALTHCHECK (distroless images), so `depends_on` only orders starts;
//! the one-offs (the MAS migration, the volumes' owners) are waited for.

use std::collections::BTreeMap;

use serde::Serialize;

use super::spec::{ContainerSpec, Desired, CONFIG_HASH_LABEL, PROJECT_LABEL, SERVICE_LABEL};
use super::up::volume_owner;
use crate::stack;

#[derive(Serialize)]
struct ComposeFile {
    services: BTreeMap<String, ComposeService>,
    networks: BTreeMap<String, ComposeNetwork>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, ComposeVolume>,
}

#[derive(Serialize)]
struct ComposeService {
    image: String,
    container_name: String,
    hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    environment: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tmpfs: Vec<String>,
    read_only: bool,
    user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    group_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    labels: BTreeMap<String, String>,
    /// Absent: compose's default, `no` (which PyYAML would read as a boolean if written).
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<&'static str>,
    networks: BTreeMap<String, ServiceNetwork>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, Dependency>,
}

#[derive(Serialize)]
struct ServiceNetwork {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
}

#[derive(Serialize)]
struct Dependency {
    condition: &'static str,
}

#[derive(Serialize)]
struct ComposeNetwork {
    name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    external: bool,
}

#[derive(Serialize)]
struct ComposeVolume {
    name: String,
}

fn service(spec: &ContainerSpec, front: bool) -> ComposeService {
    let mut volumes: Vec<String> = spec
        .files
        .iter()
        .chain(&spec.secrets)
        .map(|f| format!("{}:{}:ro", f.source.display(), f.target))
        .collect();
    volumes.extend(
        spec.volumes
            .iter()
            .map(|v| format!("{}:{}", short(&v.volume), v.target)),
    );
    let ports = spec
        .publish
        .iter()
        .map(|p| {
            let host = match p.host_port {
                Some(0) => String::new(),
                Some(port) => port.to_string(),
                None => p.port.to_string(),
            };
            match &p.host_ip {
                Some(ip) => format!("{ip}:{host}:{}/{}", p.port, p.protocol),
                None if host.is_empty() => format!("{}/{}", p.port, p.protocol),
                None => format!("{host}:{}/{}", p.port, p.protocol),
            }
        })
        .collect();
    // Compose sets its own project, service and hash labels.
    let labels = spec
        .labels
        .iter()
        .filter(|(k, _)| {
            ![PROJECT_LABEL, SERVICE_LABEL, CONFIG_HASH_LABEL].contains(&k.as_str())
                && !k.starts_with("com.docker.compose.")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut networks = BTreeMap::from([(
        "default".to_string(),
        ServiceNetwork {
            aliases: spec.aliases.clone(),
        },
    )]);
    if front && spec.public {
        networks.insert("front".into(), ServiceNetwork { aliases: vec![] });
    }
    ComposeService {
        image: spec.image.clone(),
        container_name: spec.container.clone(),
        hostname: spec.service.clone(),
        entrypoint: spec.entrypoint.clone(),
        command: spec.command.clone(),
        environment: spec.env.clone(),
        volumes,
        tmpfs: spec.tmpfs.clone(),
        read_only: spec.read_only,
        user: spec.user.clone(),
        group_add: spec.group_add.clone(),
        ports,
        labels,
        restart: spec.restart.then_some("unless-stopped"),
        networks,
        depends_on: BTreeMap::new(),
    }
}

/// The volume's name inside the compose file (compose prefixes the project itself).
fn short(volume: &str) -> &str {
    volume.split_once('_').map_or(volume, |(_, v)| v)
}

/// The compose file of a desired state, as YAML text.
pub fn export(desired: &Desired) -> Result<String, serde_yaml_ng::Error> {
    let mut services = BTreeMap::new();
    for spec in &desired.containers {
        let mut s = service(spec, true);
        // Each service waits for the services of the stage before its own.
        let previous = desired
            .containers
            .iter()
            .filter(|o| o.stage < spec.stage)
            .map(|o| o.stage)
            .max();
        for other in desired
            .containers
            .iter()
            .filter(|o| Some(o.stage) == previous)
        {
            s.depends_on.insert(
                other.service.clone(),
                Dependency {
                    condition: "service_started",
                },
            );
        }
        // A new volume is root's: the same one-off as `up` gives it to the service's user
        // first (compose runs it again on every `up`; it only changes the top directory).
        if !spec.volumes.is_empty() {
            let owner = volume_owner(spec);
            s.depends_on.insert(
                owner.service.clone(),
                Dependency {
                    condition: "service_completed_successfully",
                },
            );
            services.insert(owner.service.clone(), service(&owner, false));
        }
        if spec.service == stack::MAS {
            if let Some(migrate) = &desired.mas_migrate {
                s.depends_on.insert(
                    migrate.service.clone(),
                    Dependency {
                        condition: "service_completed_successfully",
                    },
                );
            }
        }
        services.insert(spec.service.clone(), s);
    }
    if let Some(migrate) = &desired.mas_migrate {
        let mut s = service(migrate, false);
        s.depends_on.insert(
            stack::POSTGRES.into(),
            Dependency {
                condition: "service_started",
            },
        );
        services.insert(migrate.service.clone(), s);
    }

    let networks = BTreeMap::from([
        (
            "default".to_string(),
            ComposeNetwork {
                name: desired.network.clone(),
                external: false,
            },
        ),
        (
            "front".to_string(),
            ComposeNetwork {
                name: desired.front_network.clone(),
                external: true,
            },
        ),
    ]);
    let volumes = desired
        .volumes
        .iter()
        .map(|v| (short(v).to_owned(), ComposeVolume { name: v.clone() }))
        .collect();
    // No top-level `name`: docker-compose 1.29 (Debian's) rejects it; pass `-p PROJECT`.
    serde_yaml_ng::to_string(&ComposeFile {
        services,
        networks,
        volumes,
    })
}
