//! Per-service overrides of what a container runs, outside the deployment file: another
//! entry point or command, another readiness probe, other published ports. For debugging an
//! image and for the tests, which run the `ess-standin` stand-in in place of every service.
//!
//! ```yaml
//! services:
//!   federation_reader:          # a service name, or a component key of `images:`
//!     command: [--name, "{name}", --listen, "0.0.0.0:8008"]   # {name}: the service name
//!     readiness: {http: {port: 8008, path: /health}}           # or {tcp: {port: N}}, {exec: [...]}
//!   router:
//!     publish: [{port: 8008, host_ip: 127.0.0.1, host_port: 0}]  # replaces host ports
//!   mas-migrate:
//!     command: [--help]         # the one-off MAS migration
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::images::Component;
use crate::stack::{Protocol, Readiness};

/// The overrides file, read once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceOverride>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOverride {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub readiness: Option<ProbeOverride>,
    #[serde(default)]
    pub publish: Option<Vec<Publish>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ProbeOverride {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Exec(Vec<String>),
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Absent: every address of the host.
    #[serde(default)]
    pub host_ip: Option<String>,
    /// Absent: the container port; 0: any free port.
    #[serde(default)]
    pub host_port: Option<u16>,
}

fn tcp() -> String {
    "tcp".into()
}

impl Publish {
    pub fn same_port(port: u16, protocol: Protocol) -> Publish {
        Publish {
            port,
            protocol: match protocol {
                Protocol::Tcp => "tcp".into(),
                Protocol::Udp => "udp".into(),
            },
            host_ip: None,
            host_port: Some(port),
        }
    }
}

/// The probe of a service as the Docker step runs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Probe {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Exec(Vec<String>),
}

impl From<&Readiness> for Probe {
    fn from(r: &Readiness) -> Probe {
        match r {
            Readiness::Http { port, path } => Probe::Http {
                port: *port,
                path: (*path).to_owned(),
            },
            Readiness::Tcp { port } => Probe::Tcp { port: *port },
            Readiness::Exec(cmd) => Probe::Exec(cmd.clone()),
        }
    }
}

impl From<&ProbeOverride> for Probe {
    fn from(r: &ProbeOverride) -> Probe {
        match r {
            ProbeOverride::Http { port, path } => Probe::Http {
                port: *port,
                path: path.clone(),
            },
            ProbeOverride::Tcp { port } => Probe::Tcp { port: *port },
            ProbeOverride::Exec(cmd) => Probe::Exec(cmd.clone()),
        }
    }
}

/// The overrides file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Overrides {
    pub fn load(path: &Path) -> Result<Overrides, OverridesError> {
        let text = std::fs::read_to_string(path).map_err(|source| OverridesError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|e| OverridesError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The override of a service: by its name first, then by its component's key.
    pub fn get(&self, service: &str, component: Option<Component>) -> Option<&ServiceOverride> {
        self.services
            .get(service)
            .or_else(|| component.and_then(|c| self.services.get(c.key())))
    }
}

/// `{name}` in an overridden command becomes the service name.
pub fn substitute(args: &[String], service: &str) -> Vec<String> {
    args.iter().map(|a| a.replace("{name}", service)).collect()
}
