//! Synapse: `homeserver.yaml` for the main process and each federation reader (after the
//! chart's shared underrides, homeserver overrides and process-specific files) and the
//! libpq password file for its database login.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{https, synapse_log, yaml, Embedded, RenderError, ServiceConfig};
use crate::deployment::{Deployment, Edition};
use crate::secrets;
use crate::stack::{
    self, SYNAPSE_HEALTH_PORT, SYNAPSE_HTTP_PORT, SYNAPSE_METRICS_PORT, SYNAPSE_REPLICATION_PORT,
};

pub const SYNAPSE_DB: &str = "synapse";
pub const SYNAPSE_DB_USER: &str = "synapse_user";
const PGPASS_MOUNT: &str = "/conf/pgpass";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Main,
    FederationReader(u8),
}

impl Process {
    fn name(self) -> String {
        match self {
            Process::Main => stack::SYNAPSE_MAIN.into(),
            Process::FederationReader(i) => stack::federation_reader(i),
        }
    }
}

#[derive(Serialize)]
struct Homeserver {
    server_name: String,
    public_baseurl: String,
    web_client_location: String,
    report_stats: bool,
    mau_stats_only: bool,
    require_auth_for_profile_requests: bool,
    federation_client_minimum_tls_version: &'static str,
    signing_key_path: String,
    macaroon_secret_key_path: String,
    registration_shared_secret_path: String,
    enable_metrics: bool,
    log_config: &'static str,
    database: Database,
    ip_range_blacklist: Vec<&'static str>,
    url_preview_enabled: bool,
    url_preview_ip_range_whitelist: Vec<&'static str>,
    url_preview_ip_range_blacklist: Vec<&'static str>,
    matrix_authentication_service: MasLink,
    password_config: PasswordConfig,
    experimental_features: BTreeMap<&'static str, bool>,
    max_event_delay_duration: &'static str,
    rc_message: RateLimit,
    rc_delayed_event_mgmt: RateLimit,
    matrix_rtc: MatrixRtc,
    send_federation: bool,
    start_pushers: bool,
    media_store_path: &'static str,
    max_upload_size: String,
    instance_map: BTreeMap<String, Instance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<Redis>,
    worker_app: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listeners: Option<Vec<Listener>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_listeners: Option<Vec<Listener>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_media_repo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_local_media_storage: Option<bool>,
}

#[derive(Serialize)]
struct Database {
    name: &'static str,
    args: DatabaseArgs,
}

#[derive(Serialize)]
struct DatabaseArgs {
    user: &'static str,
    dbname: &'static str,
    host: &'static str,
    port: u16,
    sslmode: &'static str,
    /// libpq reads the password from this file: the config itself holds no secret.
    passfile: &'static str,
    application_name: String,
    keepalives: u8,
    keepalives_idle: u16,
    keepalives_interval: u16,
    keepalives_count: u8,
    cp_min: u8,
    cp_max: u8,
}

#[derive(Serialize)]
struct MasLink {
    enabled: bool,
    secret_path: String,
    endpoint: String,
    force_http2: bool,
}

#[derive(Serialize)]
struct PasswordConfig {
    localdb_enabled: bool,
    enabled: bool,
}

#[derive(Serialize)]
struct RateLimit {
    per_second: f64,
    burst_count: u32,
}

#[derive(Serialize)]
struct MatrixRtc {
    transports: Vec<RtcTransport>,
}

#[derive(Serialize)]
struct RtcTransport {
    #[serde(rename = "type")]
    kind: &'static str,
    livekit_service_url: String,
}

#[derive(Serialize)]
struct Instance {
    host: String,
    port: u16,
}

#[derive(Serialize)]
struct Redis {
    enabled: bool,
    host: &'static str,
    port: u16,
}

#[derive(Serialize)]
struct Listener {
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    bind_addresses: Vec<&'static str>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_forwarded: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resources>,
}

#[derive(Serialize)]
struct Resources {
    names: Vec<&'static str>,
    compress: bool,
}

fn http_listener(port: u16, x_forwarded: bool, names: Vec<&'static str>) -> Listener {
    Listener {
        port,
        tls: Some(false),
        bind_addresses: vec!["0.0.0.0"],
        kind: "http",
        x_forwarded: Some(x_forwarded),
        resources: vec![Resources {
            names,
            compress: false,
        }],
    }
}

fn listeners(process: Process) -> Vec<Listener> {
    let mut list = vec![http_listener(
        SYNAPSE_HTTP_PORT,
        true,
        vec!["client", "federation"],
    )];
    if process == Process::Main {
        list.push(http_listener(
            SYNAPSE_REPLICATION_PORT,
            false,
            vec!["replication"],
        ));
    }
    list.push(Listener {
        port: SYNAPSE_METRICS_PORT,
        tls: None,
        bind_addresses: vec!["0.0.0.0"],
        kind: "metrics",
        x_forwarded: None,
        resources: vec![],
    });
    // The metrics listener does not serve /health, so health has a listener of its own.
    list.push(http_listener(SYNAPSE_HEALTH_PORT, false, vec!["health"]));
    list
}

/// The addresses Synapse must never connect to on behalf of users (Synapse's default list).
const PRIVATE_RANGES: [&str; 19] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
];

fn homeserver(d: &Deployment, process: Process) -> Homeserver {
    let secret = |name: secrets::SecretName| name.container_path();
    let name = process.name();

    let mut experimental = BTreeMap::new();
    experimental.insert("msc4028_push_encrypted_events", true);
    experimental.insert("msc4452_enabled", true);
    // QR-code login; needs MAS.
    experimental.insert("msc4108_enabled", true);
    // Matrix RTC discovery and sync v2 state_after for calls.
    experimental.insert("msc4143_enabled", true);
    experimental.insert("msc4222_enabled", true);

    let mut instance_map = BTreeMap::new();
    instance_map.insert(
        "main".to_owned(),
        Instance {
            host: stack::SYNAPSE_MAIN.into(),
            port: SYNAPSE_REPLICATION_PORT,
        },
    );

    let (listeners, worker_listeners) = match process {
        Process::Main => (Some(listeners(process)), None),
        Process::FederationReader(_) => (None, Some(listeners(process))),
    };

    Homeserver {
        server_name: d.server_name.to_string(),
        public_baseurl: https(&d.hosts.synapse, true),
        web_client_location: https(&d.hosts.element_web, true),
        report_stats: false,
        mau_stats_only: true,
        require_auth_for_profile_requests: true,
        federation_client_minimum_tls_version: "1.2",
        signing_key_path: secret(secrets::SYNAPSE_SIGNING_KEY),
        macaroon_secret_key_path: secret(secrets::SYNAPSE_MACAROON),
        registration_shared_secret_path: secret(secrets::SYNAPSE_REGISTRATION_SHARED_SECRET),
        enable_metrics: true,
        log_config: "/conf/log_config.yaml",
        database: Database {
            name: "psycopg2",
            args: DatabaseArgs {
                user: SYNAPSE_DB_USER,
                dbname: SYNAPSE_DB,
                host: stack::POSTGRES,
                port: stack::POSTGRES_PORT,
                sslmode: "prefer",
                passfile: PGPASS_MOUNT,
                application_name: name.clone(),
                keepalives: 1,
                keepalives_idle: 10,
                keepalives_interval: 10,
                keepalives_count: 3,
                cp_min: 5,
                cp_max: 10,
            },
        },
        ip_range_blacklist: PRIVATE_RANGES.to_vec(),
        url_preview_enabled: true,
        url_preview_ip_range_whitelist: vec![],
        url_preview_ip_range_blacklist: PRIVATE_RANGES.to_vec(),
        matrix_authentication_service: MasLink {
            enabled: true,
            secret_path: secret(secrets::MAS_SYNAPSE_SHARED_SECRET),
            endpoint: format!("http://{}:{}/", stack::MAS, stack::MAS_WEB_PORT),
            force_http2: true,
        },
        password_config: PasswordConfig {
            localdb_enabled: false,
            enabled: false,
        },
        experimental_features: experimental,
        max_event_delay_duration: "24h",
        rc_message: RateLimit {
            per_second: 0.5,
            burst_count: 30,
        },
        rc_delayed_event_mgmt: RateLimit {
            per_second: 1.0,
            burst_count: 20,
        },
        matrix_rtc: MatrixRtc {
            transports: vec![RtcTransport {
                kind: "livekit",
                livekit_service_url: https(&d.hosts.matrix_rtc, false),
            }],
        },
        send_federation: true,
        start_pushers: true,
        media_store_path: "/media/media_store",
        max_upload_size: d.synapse.max_upload_size.clone(),
        instance_map,
        redis: d.has_workers().then_some(Redis {
            enabled: true,
            host: stack::REDIS,
            port: stack::REDIS_PORT,
        }),
        worker_app: match process {
            Process::Main => "synapse.app.homeserver",
            Process::FederationReader(_) => "synapse.app.generic_worker",
        },
        // Workers are known by name in Synapse's replication; each container's hostname is
        // its worker name.
        worker_name: matches!(process, Process::FederationReader(_)).then_some(name),
        listeners,
        worker_listeners,
        enable_media_repo: (process == Process::Main).then_some(true),
        enable_local_media_storage: (process != Process::Main).then_some(false),
    }
}

/// A `.pgpass` line (host:port:database:user:password), `:` and `\` escaped.
fn pgpass(password: &str) -> Vec<u8> {
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "{}:{}:{}:{}:{}\n",
        stack::POSTGRES,
        stack::POSTGRES_PORT,
        SYNAPSE_DB,
        SYNAPSE_DB_USER,
        escape(password)
    )
    .into_bytes()
}

pub(super) fn process(
    d: &Deployment,
    process: Process,
    embedded: &Embedded,
) -> Result<ServiceConfig, RenderError> {
    let name = process.name();
    let config = ServiceConfig::new(&name)
        .file(
            "homeserver.yaml",
            "/conf/homeserver.yaml",
            yaml(&format!("{name} homeserver.yaml"), &homeserver(d, process))?,
        )
        .file(
            "log_config.yaml",
            "/conf/log_config.yaml",
            yaml("synapse log config", &synapse_log::log_config())?,
        )
        .sensitive_file(
            "pgpass",
            PGPASS_MOUNT,
            pgpass(&embedded.synapse_db_password),
        )
        .env("SYNAPSE_CONFIG_PATH", "/conf/homeserver.yaml");
    // Synapse's image runs `python -m $SYNAPSE_WORKER --config-path $SYNAPSE_CONFIG_PATH`.
    // TODO: the Pro Rust federation reader's image is not public; how it takes its config
    // path is to be confirmed when the Docker step first runs it.
    let config = match (process, d.edition) {
        (Process::FederationReader(_), Edition::Community) => {
            config.env("SYNAPSE_WORKER", "synapse.app.generic_worker")
        }
        _ => config,
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_escapes_separators() {
        let line = String::from_utf8(pgpass("a:b\\c")).unwrap();
        assert_eq!(line, "postgres:5432:synapse:synapse_user:a\\:b\\\\c\n");
    }
}
