//! What `up` would do: the project's containers as the daemon has them, compared with the
//! desired state. Per container: create, recreate (and why), start, remove or unchanged.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::ListContainersOptions;

use super::client::{api, is_not_found, DockerError, Engine};
use super::spec::{
    ContainerSpec, Desired, HASH_CONFIG_LABEL, HASH_SECRETS_LABEL, HASH_SETTINGS_LABEL,
    ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL,
};

/// One container of the project as the daemon reports it.
#[derive(Debug, Clone)]
pub struct Existing {
    pub id: String,
    pub name: String,
    pub service: String,
    pub image_id: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
    pub state: String,
    pub oneoff: bool,
}

/// Every container labelled with the project, one-off ones included.
pub async fn existing(engine: &Engine, project: &str) -> Result<Vec<Existing>, DockerError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{PROJECT_LABEL}={project}")],
    )]);
    let list = engine
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(api("list the project's containers"))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            let state = c.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
            Existing {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                oneoff: labels.get(ONEOFF_LABEL).is_some_and(|v| v == "True"),
                running: state == ContainerSummaryStateEnum::RUNNING,
                state: state.to_string(),
                labels,
            }
        })
        .collect())
}

/// Why a container is recreated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Image,
    Configuration,
    Secret,
    Settings,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Image => "image",
            Reason::Configuration => "configuration",
            Reason::Secret => "secret",
            Reason::Settings => "settings",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Recreate(Vec<Reason>),
    /// Exists as wanted but is not running (an interrupted `up`, a stopped container).
    Start,
    Unchanged,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create => f.write_str("create"),
            Action::Recreate(reasons) => {
                let list: Vec<String> = reasons.iter().map(Reason::to_string).collect();
                write!(f, "recreate ({})", list.join(", "))
            }
            Action::Start => f.write_str("start"),
            Action::Unchanged => f.write_str("unchanged"),
        }
    }
}

/// One desired container and what happens to it.
#[derive(Debug, Clone)]
pub struct Step {
    pub spec: ContainerSpec,
    pub existing: Option<Existing>,
    pub action: Action,
}

/// Everything `up` would do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Containers of the project that are not wanted (fewer readers, leftovers).
    pub remove: Vec<Existing>,
    pub create_networks: Vec<String>,
    pub create_volumes: Vec<String>,
    /// Image reference -> local image id (absent: not present locally).
    pub images: BTreeMap<String, Option<String>>,
}

impl Plan {
    pub fn changes(&self) -> bool {
        !self.remove.is_empty()
            || !self.create_networks.is_empty()
            || !self.create_volumes.is_empty()
            || self.steps.iter().any(|s| s.action != Action::Unchanged)
    }

    /// One line per network, volume and container, for stdout.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for n in &self.create_networks {
            lines.push(format!("network {n}: create"));
        }
        for v in &self.create_volumes {
            lines.push(format!("volume {v}: create"));
        }
        for s in &self.steps {
            lines.push(format!(
                "{} ({}): {}",
                s.spec.service, s.spec.container, s.action
            ));
        }
        for e in &self.remove {
            lines.push(format!("{} ({}): remove", e.service, e.name));
        }
        lines
    }
}

/// Compares the desired state with the daemon's.
pub async fn plan(engine: &Engine, desired: &Desired) -> Result<Plan, DockerError> {
    let docker = &engine.docker;
    let mut images = BTreeMap::new();
    for spec in &desired.containers {
        if images.contains_key(&spec.image) {
            continue;
        }
        let id = match docker.inspect_image(&spec.image).await {
            Ok(inspect) => inspect.id,
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(api(format!("inspect image {}", spec.image))(e)),
        };
        images.insert(spec.image.clone(), id);
    }

    let mut create_networks = Vec::new();
    for network in [&desired.network, &desired.front_network] {
        match docker.inspect_network(network, None).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => create_networks.push(network.clone()),
            Err(e) => return Err(api(format!("inspect network {network}"))(e)),
        }
    }
    let mut create_volumes = Vec::new();
    for volume in &desired.volumes {
        match docker.inspect_volume(volume).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => create_volumes.push(volume.clone()),
            Err(e) => return Err(api(format!("inspect volume {volume}"))(e)),
        }
    }

    let mut by_name: HashMap<String, Existing> = HashMap::new();
    let mut remove = Vec::new();
    for e in existing(engine, &desired.project).await? {
        let wanted = desired.containers.iter().any(|s| s.container == e.name);
        if wanted && !e.oneoff {
            by_name.insert(e.name.clone(), e);
        } else {
            remove.push(e);
        }
    }

    let steps = desired
        .containers
        .iter()
        .map(|spec| {
            let existing = by_name.remove(&spec.container);
            let action = match &existing {
                None => Action::Create,
                Some(e) => compare(spec, e, images.get(&spec.image).cloned().flatten()),
            };
            Step {
                spec: spec.clone(),
                existing,
                action,
            }
        })
        .collect();
    Ok(Plan {
        steps,
        remove,
        create_networks,
        create_volumes,
        images,
    })
}

fn compare(spec: &ContainerSpec, e: &Existing, image_id: Option<String>) -> Action {
    let mut reasons = Vec::new();
    if image_id.as_deref() != Some(e.image_id.as_str()) || e.image != spec.image {
        reasons.push(Reason::Image);
    }
    let label = |key: &str| e.labels.get(key).map(String::as_str).unwrap_or_default();
    if label(HASH_CONFIG_LABEL) != spec.hashes.configuration {
        reasons.push(Reason::Configuration);
    }
    if label(HASH_SECRETS_LABEL) != spec.hashes.secrets {
        reasons.push(Reason::Secret);
    }
    if label(HASH_SETTINGS_LABEL) != spec.hashes.settings {
        reasons.push(Reason::Settings);
    }
    if !reasons.is_empty() {
        Action::Recreate(reasons)
    } else if !e.running {
        Action::Start
    } else {
        Action::Unchanged
    }
}
