//! The router's configuration file, in the router's own format (configs/router.example.yaml):
//! listeners, access rules, the Synapse pools (main, and the federation readers by their shared
//! name) and the well-known documents it serves.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use super::{https, well_known, yaml, RenderError, ServiceConfig};
use crate::deployment::{Deployment, Edition};
use crate::stack;

#[derive(Serialize)]
struct RouterConfig {
    listeners: Listeners,
    access: Access,
    synapse: Synapse,
    well_known: WellKnown,
}

#[derive(Serialize)]
struct Listeners {
    synapse: String,
    blackhole: String,
    well_known: String,
    metrics: String,
    startup: String,
}

#[derive(Serialize)]
struct Access {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trusted_proxies: Vec<IpNet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_allow: Option<Vec<IpNet>>,
}

#[derive(Serialize)]
struct Synapse {
    mas: bool,
    ess_version: Document,
    pools: BTreeMap<&'static str, Pool>,
}

#[derive(Serialize)]
struct Pool {
    servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paths: Option<Vec<&'static str>>,
}

/// A document the router serves: `inline` JSON text or a `file` relative to the config.
#[derive(Serialize)]
struct Document {
    #[serde(skip_serializing_if = "Option::is_none")]
    inline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

impl Document {
    fn inline(text: String) -> Self {
        Document {
            inline: Some(text),
            file: None,
        }
    }

    fn file(path: &str) -> Self {
        Document {
            inline: None,
            file: Some(path.to_owned()),
        }
    }
}

#[derive(Serialize)]
struct WellKnown {
    server: Document,
    client: Document,
    redirect: String,
}

#[derive(Serialize)]
struct EssVersion {
    version: &'static str,
    edition: &'static str,
}

/// The only paths ESS Pro's Rust federation reader serves.
const PRO_FEDERATION_READER_PATHS: [&str; 3] = [
    "^/_matrix/federation/v1/event/",
    "^/_matrix/federation/v1/state/",
    "^/_matrix/federation/v1/state_ids/",
];

const SERVER_DOCUMENT: &str = "well-known/server.json";
const CLIENT_DOCUMENT: &str = "well-known/client.json";

fn bind(port: u16) -> String {
    format!("0.0.0.0:{port}")
}

fn config(d: &Deployment) -> Result<RouterConfig, RenderError> {
    let server = |name: String| format!("{name}:{}", stack::SYNAPSE_HTTP_PORT);
    let mut pools = BTreeMap::new();
    pools.insert(
        "main",
        Pool {
            servers: vec![server(stack::SYNAPSE_MAIN.into())],
            paths: None,
        },
    );
    if d.has_workers() {
        // One name for all readers: Docker's DNS answers it with every reader's address and
        // the router's discovery follows the answer, so scaling the readers changes neither
        // this file nor the router's container.
        let servers = vec![server(stack::FEDERATION_READERS_ALIAS.into())];
        let paths = (d.edition == Edition::Pro).then(|| PRO_FEDERATION_READER_PATHS.to_vec());
        pools.insert("federation-reader", Pool { servers, paths });
    }

    let version = EssVersion {
        version: env!("CARGO_PKG_VERSION"),
        edition: d.edition.as_str(),
    };
    let version = serde_json::to_string(&version).map_err(|e| RenderError::Serialise {
        what: "ess version".into(),
        reason: e.to_string(),
    })?;

    Ok(RouterConfig {
        listeners: Listeners {
            synapse: bind(stack::ROUTER_SYNAPSE_PORT),
            blackhole: bind(stack::ROUTER_BLACKHOLE_PORT),
            well_known: bind(stack::ROUTER_WELL_KNOWN_PORT),
            metrics: bind(stack::ROUTER_METRICS_PORT),
            startup: bind(stack::ROUTER_STARTUP_PORT),
        },
        access: Access {
            trusted_proxies: d.router.trusted_proxies.clone(),
            admin_allow: d.router.admin_allow.clone(),
        },
        synapse: Synapse {
            mas: true,
            ess_version: Document::inline(version),
            pools,
        },
        well_known: WellKnown {
            server: Document::file(SERVER_DOCUMENT),
            client: Document::file(CLIENT_DOCUMENT),
            // Anyone who opens the server name's apex in a browser lands on Element Web.
            redirect: https(&d.hosts.element_web, false),
        },
    })
}

pub(super) fn router(d: &Deployment) -> Result<ServiceConfig, RenderError> {
    Ok(ServiceConfig::new(stack::ROUTER)
        .file(
            "router.yaml",
            "/conf/router.yaml",
            yaml("router config", &config(d)?)?,
        )
        .file(
            SERVER_DOCUMENT,
            &format!("/conf/{SERVER_DOCUMENT}"),
            well_known::server(d)?,
        )
        .file(
            CLIENT_DOCUMENT,
            &format!("/conf/{CLIENT_DOCUMENT}"),
            well_known::client(d)?,
        ))
}
