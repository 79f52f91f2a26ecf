//! The YAML schema of the configuration file, as written by operators. Kept at the edge:
//! `config::Settings` is what the rest of the router works with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listeners: Option<Listeners>,
    pub threads: Option<usize>,
    pub shutdown: Option<Shutdown>,
    pub timeouts: Option<Timeouts>,
    pub access_log: Option<String>,
    pub access: Option<Access>,
    pub discovery: Option<Discovery>,
    pub synapse: Synapse,
    pub well_known: Option<WellKnown>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    pub synapse: Option<String>,
    pub blackhole: Option<String>,
    pub well_known: Option<String>,
    pub metrics: Option<String>,
    pub startup: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    pub grace_period: Option<String>,
    pub drain_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect: Option<String>,
    pub request_headers: Option<String>,
    pub client_idle: Option<String>,
    pub server: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    pub interval: Option<String>,
    pub hold: Option<String>,
    pub family: Option<String>,
    #[serde(default)]
    pub nameservers: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub admin_allow: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Synapse {
    #[serde(default)]
    pub mas: bool,
    pub ess_version: Option<Document>,
    /// Pool name (a worker type) to its settings; order does not matter, the route order is
    /// the chart's.
    pub pools: BTreeMap<String, Pool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub servers: Vec<String>,
    pub paths: Option<Vec<String>>,
    pub get_paths: Option<Vec<String>>,
    pub balance: Option<String>,
    pub maxconn: Option<u32>,
    pub queue_timeout: Option<String>,
    pub server_timeout: Option<String>,
    pub failover_maxconn: Option<u32>,
    pub health_check: Option<HealthCheckOrOff>,
    pub fallback_to_main: Option<bool>,
}

/// `health_check: false` turns checks off; a map tunes them.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HealthCheckOrOff {
    Enabled(bool),
    Tuned(HealthCheck),
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: Option<String>,
    pub port: Option<u16>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WellKnown {
    pub server: Option<Document>,
    pub client: Option<Document>,
    pub support: Option<Document>,
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    pub redirect: Option<String>,
}

/// A JSON document given `inline` (JSON text, or YAML that is converted) or as a `file`
/// path (relative to the configuration file); exactly one of the two.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub inline: Option<serde_yaml_ng::Value>,
    pub file: Option<String>,
}
