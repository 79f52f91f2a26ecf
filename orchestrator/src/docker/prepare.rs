//! Everything the Docker verbs need before they talk to the daemon: the deployment file, the
//! overrides, the secrets (generated or fetched for `up`), the rendered configuration and the
//! desired state built from them.

use std::error::Error;
use std::path::{Path, PathBuf};

use super::overrides::Overrides;
use super::spec::{self, Desired};
use crate::deployment::Deployment;
use crate::render::{self, Rendered};
use crate::secret_source::Resolver;
use crate::secrets;
use crate::vault::VaultSession;

type Failure = Box<dyn Error + Send + Sync>;

/// Where a project's inputs are and what it is called.
#[derive(Debug, Clone)]
pub struct Project {
    /// Compose project name: prefix of every container, network and volume.
    pub name: String,
    pub config: PathBuf,
    pub overrides: Option<PathBuf>,
    /// Where `up` writes the rendered files the containers mount.
    pub rendered_dir: PathBuf,
    /// Federation readers instead of the file's number (`essctl scale`).
    pub federation_readers: Option<u8>,
}

impl Project {
    /// `rendered_dir` defaults to `rendered/<project>` beside the deployment file.
    pub fn new(
        name: &str,
        config: &Path,
        overrides: Option<&Path>,
        rendered_dir: Option<&Path>,
    ) -> Project {
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
        let base = config.parent().unwrap_or(Path::new(".")).to_owned();
        Project {
            name: name.to_owned(),
            rendered_dir: rendered_dir
                .map(Path::to_owned)
                .unwrap_or_else(|| base.join("rendered").join(name)),
            config,
            overrides: overrides.map(Path::to_owned),
            federation_readers: None,
        }
    }
}

/// A project's inputs, read and rendered.
pub struct Prepared {
    pub deployment: Deployment,
    pub rendered: Rendered,
    pub desired: Desired,
}

/// Secrets handling of [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsStep {
    /// Generate missing secrets and fetch external ones (`up`).
    Ensure,
    /// Use the secrets as they are (`plan`, `export`).
    ReadOnly,
}

/// Loads, renders and builds the desired state. Writes nothing unless `secrets` is `Ensure`.
pub async fn prepare(project: &Project, secrets_step: SecretsStep) -> Result<Prepared, Failure> {
    let mut deployment = Deployment::load(&project.config)?;
    if let Some(n) = project.federation_readers {
        deployment.synapse.federation_readers = n;
    }
    let overrides = match &project.overrides {
        Some(path) => Overrides::load(path)?,
        None => Overrides::default(),
    };

    if secrets_step == SecretsStep::Ensure {
        let mut session = match &deployment.vault {
            Some(settings) if deployment.uses_vault() => {
                Some(VaultSession::connect(settings, |name| std::env::var(name).ok()).await?)
            }
            _ => None,
        };
        for line in secrets::ensure_generated(deployment.secrets_dir())? {
            tracing::debug!(%line, "secret");
        }
        let mut resolver = Resolver::new(session.as_mut());
        secrets::fetch_external(&deployment, &mut resolver).await?;
    }

    let rendered = render::render(&deployment)?;
    let desired = spec::desired(&spec::Inputs {
        project: &project.name,
        deployment: &deployment,
        deployment_path: &project.config,
        rendered: &rendered,
        rendered_dir: &project.rendered_dir,
        overrides: &overrides,
    })?;
    Ok(Prepared {
        deployment,
        rendered,
        desired,
    })
}
