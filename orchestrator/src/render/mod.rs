//! Rendering: every configuration file and environment set of the stack, built as typed
//! data and serialised, then written under one output directory, one folder per service.

mod element;
mod livekit;
mod mas;
mod postgres;
mod router;
mod synapse;
mod synapse_log;
mod well_known;

use std::collections::BTreeMap;
use std::fs::{self, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::deployment::Deployment;
use crate::secrets::{self, MissingSecret, SecretName};
use crate::stack;

/// Mode of rendered files that carry a secret value (LiveKit's keys, Synapse's pgpass).
pub const SENSITIVE_MODE: u32 = 0o600;
/// Mode of the other rendered files.
pub const PLAIN_MODE: u32 = 0o644;

/// One rendered file of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Path under the service's folder of the output directory.
    pub name: String,
    /// Where the container sees it (bind-mounted read-only).
    pub mount: String,
    pub contents: Vec<u8>,
    /// Holds a secret value: written owner-only.
    pub sensitive: bool,
}

/// Everything rendered for one service (named as in [`stack::services`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceConfig {
    pub service: String,
    pub files: Vec<ConfigFile>,
    /// Environment variables; never secret values (those come as `*_FILE` paths).
    pub env: BTreeMap<String, String>,
}

impl ServiceConfig {
    fn new(service: &str) -> Self {
        ServiceConfig {
            service: service.to_owned(),
            ..Default::default()
        }
    }

    fn file(mut self, name: &str, mount: &str, contents: Vec<u8>) -> Self {
        self.files.push(ConfigFile {
            name: name.into(),
            mount: mount.into(),
            contents,
            sensitive: false,
        });
        self
    }

    fn sensitive_file(mut self, name: &str, mount: &str, contents: Vec<u8>) -> Self {
        self.files.push(ConfigFile {
            name: name.into(),
            mount: mount.into(),
            contents,
            sensitive: true,
        });
        self
    }

    fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }
}

/// The rendered configuration of a whole deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub services: Vec<ServiceConfig>,
}

/// Rendering or writing the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Secret(#[from] MissingSecret),
    #[error("secret {name} is not valid UTF-8 text")]
    SecretNotText { name: SecretName },
    #[error("cannot serialise {what}: {reason}")]
    Serialise { what: String, reason: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Values some files must embed (LiveKit's key file, Synapse's pgpass), read from the
/// secrets directory.
struct Embedded {
    livekit_secret: String,
    synapse_db_password: String,
}

/// Renders every service's configuration. The secrets must exist (`essctl secrets`).
pub fn render(d: &Deployment) -> Result<Rendered, RenderError> {
    let text = |name: SecretName| -> Result<String, RenderError> {
        let bytes = secrets::read(d.secrets_dir(), name)?;
        String::from_utf8(bytes).map_err(|_| RenderError::SecretNotText { name })
    };
    let embedded = Embedded {
        livekit_secret: text(secrets::ELEMENT_CALL_LIVEKIT_SECRET)?,
        synapse_db_password: text(secrets::POSTGRES_SYNAPSE_PASSWORD)?,
    };
    for name in needed_secret_files(d) {
        secrets::read(d.secrets_dir(), name)?;
    }

    let mut services = vec![postgres::postgres(d)?];
    if d.has_workers() {
        services.push(postgres::redis(d));
    }
    services.push(synapse::process(d, synapse::Process::Main, &embedded)?);
    services.push(mas::mas(d)?);
    for i in 0..d.synapse.federation_readers {
        services.push(synapse::process(
            d,
            synapse::Process::FederationReader(i),
            &embedded,
        )?);
    }
    services.push(router::router(d)?);
    services.push(livekit::lk_jwt(d));
    services.push(livekit::livekit(d, &embedded)?);
    services.push(element::element_web(d)?);
    services.push(element::element_admin(d));
    Ok(Rendered { services })
}

/// Every secret file some service mounts.
fn needed_secret_files(d: &Deployment) -> Vec<SecretName> {
    let mut names: Vec<SecretName> = stack::services(d)
        .into_iter()
        .flat_map(|s| s.secrets)
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Rendered {
    /// The configuration of one service.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.service == name)
    }

    /// Writes `out/<service>/<file>` for every file and `out/<service>/env` for every
    /// environment set (`KEY=value` lines, Docker's env-file format). Each file is replaced
    /// atomically. A new output directory is created owner-only.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, RenderError> {
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| RenderError::Write { path, source }
        };
        // A new output directory is owner-only; an existing one keeps its mode (it may be
        // shared): the files holding secrets are owner-only by themselves.
        if !out.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(out)
                .map_err(write_error(out))?;
        }

        let mut written = Vec::new();
        for service in &self.services {
            let dir = out.join(&service.service);
            for file in &service.files {
                let path = dir.join(&file.name);
                let mode = if file.sensitive {
                    SENSITIVE_MODE
                } else {
                    PLAIN_MODE
                };
                write_atomically(&path, &file.contents, mode).map_err(write_error(&path))?;
                written.push(path);
            }
            if !service.env.is_empty() {
                let path = dir.join("env");
                let lines: String = service
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
                write_atomically(&path, lines.as_bytes(), PLAIN_MODE)
                    .map_err(write_error(&path))?;
                written.push(path);
            }
        }
        // TODO: files of services that no longer exist (fewer federation readers) are left
        // in place; the Docker step only mounts what the current render lists.
        Ok(written)
    }
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".essctl-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// YAML text of a typed value.
fn yaml<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, RenderError> {
    serde_yaml_ng::to_string(value)
        .map(String::into_bytes)
        .map_err(|e| RenderError::Serialise {
            what: what.into(),
            reason: e.to_string(),
        })
}

/// Pretty JSON text of a typed value, with a final newline.
fn json<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, RenderError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| RenderError::Serialise {
        what: what.into(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// `https://<host>` with the trailing slash some consumers want.
fn https(host: &crate::deployment::Hostname, slash: bool) -> String {
    if slash {
        format!("https://{host}/")
    } else {
        format!("https://{host}")
    }
}
