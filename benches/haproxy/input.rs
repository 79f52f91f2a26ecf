//! The ess-router configuration file (configs/router.example.yaml's format), read into what
//! an HAProxy configuration needs. Keys that change nothing in HAProxy are accepted and
//! ignored; unknown keys are refused, so a new router setting cannot silently make the two
//! configurations differ.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::chart::{self, Balance, WorkerType};

/// Everything the HAProxy configuration is rendered from.
#[derive(Debug)]
pub struct Input {
    pub listeners: Listeners,
    /// 0: HAProxy's default, one thread per core.
    pub threads: usize,
    pub timeouts: Timeouts,
    pub trusted_proxies: Vec<String>,
    pub admin_allow: Option<Vec<String>>,
    pub mas: bool,
    pub ess_version: String,
    /// main first, then the chart's alphabetical order.
    pub pools: Vec<Pool>,
    pub well_known: WellKnown,
}

#[derive(Debug, Default)]
pub struct Listeners {
    pub synapse: Option<SocketAddr>,
    pub blackhole: Option<SocketAddr>,
    pub well_known: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub startup: Option<SocketAddr>,
}

#[derive(Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub request_headers: Duration,
    pub client_idle: Duration,
    pub server: Duration,
}

#[derive(Debug)]
pub struct Pool {
    pub kind: &'static WorkerType,
    pub servers: Vec<String>,
    pub paths: Vec<String>,
    pub get_paths: Vec<String>,
    pub balance: Balance,
    pub maxconn: u32,
    pub queue_timeout: Duration,
    /// Only when set for this pool; otherwise the global server timeout applies.
    pub server_timeout: Option<Duration>,
    pub health_check: Option<HealthCheck>,
    pub fallback_to_main: bool,
    pub failover_maxconn: u32,
}

#[derive(Debug, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl HealthCheck {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
}

#[derive(Debug)]
pub struct WellKnown {
    /// (document name, JSON text) for the documents that are configured.
    pub documents: Vec<(&'static str, String)>,
    pub headers: Vec<(String, String)>,
    pub redirect: Option<String>,
}

/// The chart's headers on the well-known documents, which the configuration may change.
const WELL_KNOWN_HEADERS: [(&str, &str); 9] = [
    (
        "Access-Control-Allow-Headers",
        "X-Requested-With, Content-Type, Authorization",
    ),
    (
        "Access-Control-Allow-Methods",
        "GET, POST, PUT, DELETE, OPTIONS",
    ),
    ("Access-Control-Allow-Origin", "*"),
    ("Cache-Control", "public, max-age=3600"),
    ("Content-Security-Policy", "frame-ancestors 'self'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex"),
    ("X-XSS-Protection", "1; mode=block"),
];

/// Read and check a router configuration file; errors name the key.
pub fn load(path: &Path) -> Result<Input, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let raw: raw::File =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    convert(raw, base).map_err(|e| format!("{}: {e}", path.display()))
}

fn convert(raw: raw::File, base: &Path) -> Result<Input, String> {
    let listeners = match raw.listeners {
        None => {
            let any = |port| Some(SocketAddr::from(([0, 0, 0, 0], port)));
            Listeners {
                synapse: any(8008),
                blackhole: any(8009),
                well_known: any(8010),
                metrics: any(8405),
                startup: any(8406),
            }
        }
        Some(l) => Listeners {
            synapse: address("listeners.synapse", l.synapse)?,
            blackhole: address("listeners.blackhole", l.blackhole)?,
            well_known: address("listeners.well_known", l.well_known)?,
            metrics: address("listeners.metrics", l.metrics)?,
            startup: address("listeners.startup", l.startup)?,
        },
    };

    let t = raw.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        connect: duration("timeouts.connect", t.connect, 5)?,
        request_headers: duration("timeouts.request_headers", t.request_headers, 10)?,
        client_idle: duration("timeouts.client_idle", t.client_idle, 900)?,
        server: duration("timeouts.server", t.server, 180)?,
    };

    let access = raw.access.unwrap_or_default();
    let ess_version = match raw.synapse.ess_version {
        Some(doc) => document("synapse.ess_version", doc, base)?,
        // What the router answers when it is not configured.
        None => format!(
            r#"{{"version": "{}", "edition": "community"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
    };

    let mut pools = raw
        .synapse
        .pools
        .into_iter()
        .map(|(name, pool)| self::pool(&name, pool))
        .collect::<Result<Vec<_>, _>>()?;
    if !pools.iter().any(|p| p.kind.name == "main") {
        return Err("synapse.pools.main: the main pool is required".into());
    }
    // BTreeMap order is alphabetical already; main goes first.
    pools.sort_by_key(|p| p.kind.name != "main");

    Ok(Input {
        listeners,
        threads: raw.threads.unwrap_or(0),
        timeouts,
        trusted_proxies: access.trusted_proxies,
        admin_allow: access.admin_allow,
        mas: raw.synapse.mas,
        ess_version,
        pools,
        well_known: well_known(raw.well_known.unwrap_or_default(), base)?,
    })
}

fn pool(name: &str, raw: raw::Pool) -> Result<Pool, String> {
    let key = format!("synapse.pools.{name}");
    let kind = chart::worker_type(name).ok_or_else(|| format!("{key}: unknown pool"))?;

    let regexes = |field: &str, list: Option<Vec<String>>, get_only: bool| {
        let list = list.unwrap_or_else(|| chart::default_paths(name, get_only));
        // A map file line is `regex pool`: whitespace would split the regex.
        match list.iter().find(|r| r.contains(char::is_whitespace)) {
            Some(bad) => Err(format!("{key}.{field}: `{bad}` contains whitespace")),
            None => Ok(list),
        }
    };
    let balance = match raw.balance {
        None => kind.balance,
        Some(text) => Balance::parse(&text)
            .ok_or_else(|| format!("{key}.balance: unknown balance mode `{text}`"))?,
    };
    let health_check = match raw.health_check {
        Some(raw::HealthCheckOrOff::Enabled(false)) => None,
        None | Some(raw::HealthCheckOrOff::Enabled(true)) => {
            Some(health_check(&key, raw::HealthCheck::default())?)
        }
        Some(raw::HealthCheckOrOff::Tuned(tuned)) => Some(health_check(&key, tuned)?),
    };
    let queue_timeout = match raw.queue_timeout {
        None => kind.queue_timeout,
        text => duration(&format!("{key}.queue_timeout"), text, 0)?,
    };
    let server_timeout = match raw.server_timeout {
        None => None,
        text => Some(duration(&format!("{key}.server_timeout"), text, 0)?),
    };

    Ok(Pool {
        kind,
        servers: raw.servers,
        paths: regexes("paths", raw.paths, false)?,
        get_paths: regexes("get_paths", raw.get_paths, true)?,
        balance,
        maxconn: raw.maxconn.unwrap_or(kind.maxconn),
        queue_timeout,
        server_timeout,
        health_check,
        fallback_to_main: raw.fallback_to_main.unwrap_or(kind.can_fall_back),
        failover_maxconn: raw.failover_maxconn.unwrap_or(250),
    })
}

fn health_check(pool_key: &str, raw: raw::HealthCheck) -> Result<HealthCheck, String> {
    let key = format!("{pool_key}.health_check");
    Ok(HealthCheck {
        path: raw.path.unwrap_or_else(|| "/health".into()),
        port: raw.port.unwrap_or(8080),
        interval: duration(&format!("{key}.interval"), raw.interval, 2)?,
        timeout: duration(&format!("{key}.timeout"), raw.timeout, 2)?,
        fall: raw.fall.unwrap_or(3),
        rise: raw.rise.unwrap_or(2),
    })
}

fn well_known(raw: raw::WellKnown, base: &Path) -> Result<WellKnown, String> {
    let mut documents = Vec::new();
    for (name, doc) in [
        ("server", raw.server),
        ("client", raw.client),
        ("support", raw.support),
    ] {
        if let Some(doc) = doc {
            documents.push((name, document(&format!("well_known.{name}"), doc, base)?));
        }
    }

    let mut overrides = raw.headers;
    let mut headers = Vec::new();
    for (name, default) in WELL_KNOWN_HEADERS {
        let chosen = overrides
            .keys()
            .find(|key| key.eq_ignore_ascii_case(name))
            .cloned()
            .map(|key| overrides.remove(&key).flatten());
        match chosen {
            None => headers.push((name.to_string(), default.to_string())),
            Some(Some(value)) => headers.push((name.to_string(), value)),
            Some(None) => {}
        }
    }
    headers.extend(
        overrides
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?))),
    );

    Ok(WellKnown {
        documents,
        headers,
        redirect: raw.redirect,
    })
}

fn address(key: &str, value: Option<String>) -> Result<Option<SocketAddr>, String> {
    value
        .map(|text| {
            text.parse().map_err(|_| {
                format!("{key}: expected an address like 0.0.0.0:8008, found `{text}`")
            })
        })
        .transpose()
}

/// `500ms`, `5s`, `2m` or `1h`; the default is in seconds.
fn duration(key: &str, value: Option<String>, default_secs: u64) -> Result<Duration, String> {
    let Some(text) = value else {
        return Ok(Duration::from_secs(default_secs));
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{key}: `{text}` is not a duration"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!(
            "{key}: `{text}` is not a duration like 500ms, 5s or 2m"
        )),
    }
}

/// A JSON document given `inline` (JSON text, or YAML that is turned into JSON) or as a
/// `file` relative to the configuration file.
fn document(key: &str, doc: raw::Document, base: &Path) -> Result<String, String> {
    match (doc.inline, doc.file) {
        (Some(serde_yaml_ng::Value::String(text)), None) => Ok(text),
        (Some(value), None) => serde_json::to_string(&value)
            .map_err(|e| format!("{key}.inline: not JSON-compatible: {e}")),
        (None, Some(file)) => std::fs::read_to_string(base.join(&file))
            .map_err(|e| format!("{key}.file: cannot read {file}: {e}")),
        _ => Err(format!("{key}: expected exactly one of `inline` or `file`")),
    }
}

/// The file's schema, as operators write it.
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub listeners: Option<Listeners>,
        pub threads: Option<usize>,
        pub timeouts: Option<Timeouts>,
        pub access: Option<Access>,
        pub synapse: Synapse,
        pub well_known: Option<WellKnown>,
        // Nothing in HAProxy follows from these; DNS names are resolved once, at start.
        #[serde(rename = "discovery")]
        pub _discovery: Option<serde_yaml_ng::Value>,
        #[serde(rename = "shutdown")]
        pub _shutdown: Option<serde_yaml_ng::Value>,
        #[serde(rename = "access_log")]
        pub _access_log: Option<serde_yaml_ng::Value>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Listeners {
        pub synapse: Option<String>,
        pub blackhole: Option<String>,
        pub well_known: Option<String>,
        pub metrics: Option<String>,
        pub startup: Option<String>,
    }

    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Timeouts {
        pub connect: Option<String>,
        pub request_headers: Option<String>,
        pub client_idle: Option<String>,
        pub server: Option<String>,
    }

    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Access {
        #[serde(default)]
        pub trusted_proxies: Vec<String>,
        pub admin_allow: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Synapse {
        #[serde(default)]
        pub mas: bool,
        pub ess_version: Option<Document>,
        pub pools: BTreeMap<String, Pool>,
    }

    #[derive(Deserialize)]
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

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum HealthCheckOrOff {
        Enabled(bool),
        Tuned(HealthCheck),
    }

    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct HealthCheck {
        pub path: Option<String>,
        pub port: Option<u16>,
        pub interval: Option<String>,
        pub timeout: Option<String>,
        pub fall: Option<u32>,
        pub rise: Option<u32>,
    }

    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct WellKnown {
        pub server: Option<Document>,
        pub client: Option<Document>,
        pub support: Option<Document>,
        #[serde(default)]
        pub headers: BTreeMap<String, Option<String>>,
        pub redirect: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Document {
        pub inline: Option<serde_yaml_ng::Value>,
        pub file: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_read_with_the_chart_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/router.example.yaml");
        let input = load(&example).unwrap();

        let names: Vec<_> = input.pools.iter().map(|p| p.kind.name).collect();
        assert_eq!(
            names,
            [
                "main",
                "federation-reader",
                "initial-synchrotron",
                "media-repository",
                "synchrotron"
            ]
        );
        let synchrotron = &input.pools[4];
        assert_eq!(
            (synchrotron.balance, synchrotron.maxconn),
            (Balance::AccessToken, 2000)
        );
        assert_eq!(synchrotron.queue_timeout, Duration::from_secs(5));
        assert!(
            !input.pools[3].fallback_to_main,
            "media-repository cannot fall back"
        );
        assert_eq!(
            input.pools[1].paths.len(),
            3,
            "federation-reader's paths are overridden"
        );
        assert_eq!(input.pools[0].health_check.as_ref().unwrap().port, 8080);
        assert_eq!(input.well_known.documents.len(), 3);
    }

    #[test]
    fn well_known_headers_can_be_changed_removed_and_added() {
        let raw = raw::WellKnown {
            headers: [
                ("cache-control".to_string(), Some("no-cache".to_string())),
                ("X-Frame-Options".to_string(), None),
                ("X-Extra".to_string(), Some("1".to_string())),
            ]
            .into(),
            ..Default::default()
        };
        let headers = well_known(raw, Path::new(".")).unwrap().headers;

        assert!(headers.contains(&("Cache-Control".into(), "no-cache".into())));
        assert!(!headers.iter().any(|(name, _)| name == "X-Frame-Options"));
        assert_eq!(headers.last().unwrap(), &("X-Extra".into(), "1".into()));
        assert_eq!(headers.len(), 9);
    }

    #[test]
    fn durations_take_the_router_units() {
        let parse = |text: &str| duration("k", Some(text.into()), 0);
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("s").is_err());
    }
}
