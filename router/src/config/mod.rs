//! Configuration: read once from YAML, checked, and turned into typed settings, so that
//! request handling never parses or fails on configuration.

mod file;

pub use file::File as RawFile;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use regex::Regex;

use crate::worker::{Balance, WorkerType};

/// A configuration problem: the file, the key and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Everything the router needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    pub listeners: Listeners,
    pub threads: usize,
    /// After SIGTERM (or SIGQUIT in an upgrade): how long requests in flight may take to
    /// finish. New connections are no longer accepted; the process exits after it.
    pub grace_period: Duration,
    /// Then: how long the runtimes get to stop background work.
    pub drain_timeout: Duration,
    pub timeouts: Timeouts,
    pub access_log: AccessLogFormat,
    pub trusted_proxies: Vec<IpNet>,
    /// `None`: the admin API is not restricted.
    pub admin_allow: Option<Vec<IpNet>>,
    pub discovery: DiscoverySettings,
    pub mas: bool,
    pub ess_version: Bytes,
    /// One entry per configured pool, main first, then the chart's (alphabetical) order.
    pub pools: Vec<PoolSettings>,
    pub well_known: WellKnown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Listeners {
    pub synapse: Option<SocketAddr>,
    pub blackhole: Option<SocketAddr>,
    pub well_known: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub startup: Option<SocketAddr>,
}

impl Listeners {
    /// Each listener's address under its key in `listeners:`.
    pub fn by_key(&self) -> [(&'static str, Option<SocketAddr>); 5] {
        [
            ("synapse", self.synapse),
            ("blackhole", self.blackhole),
            ("well_known", self.well_known),
            ("metrics", self.metrics),
            ("startup", self.startup),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// TODO: not applied yet. Pingora reads a connection's first request headers before any
    /// hook of ours runs, with its own 60 s per-read timeout, and keep-alive requests wait
    /// under `client_idle`; applying this needs a Pingora server option that 0.9 lacks.
    pub request_headers: Duration,
    pub client_idle: Duration,
    pub server: Duration,
}

/// How servers given as DNS names are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// How often names are resolved again.
    pub interval: Duration,
    /// How long the last good answer is kept while DNS fails.
    pub hold: Duration,
    /// The one address family that is used.
    pub family: AddressFamily,
    /// DNS servers to ask; empty: the system's (`/etc/resolv.conf`, which holds Docker's
    /// embedded DNS inside a container and the cluster DNS on Kubernetes).
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

impl AddressFamily {
    pub fn accepts(self, addr: &SocketAddr) -> bool {
        match self {
            AddressFamily::Ipv4 => addr.is_ipv4(),
            AddressFamily::Ipv6 => addr.is_ipv6(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Haproxy,
    Json,
}

/// A server as configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerSpec {
    /// An address literal, used as written: `10.0.0.5:8008`, `[fd00::5]:8008`.
    Addr(SocketAddr),
    /// A name whose A (or AAAA) records are the servers, all on `port`: a docker compose
    /// service name resolves to every replica.
    Host { name: String, port: u16 },
    /// An SRV record name, `_service._tcp.name`: targets and ports come from the answer, as
    /// on Kubernetes headless services.
    Srv(String),
}

impl ServerSpec {
    /// The address when the server is an address literal; names need resolving.
    pub fn literal(&self) -> Option<SocketAddr> {
        match self {
            ServerSpec::Addr(addr) => Some(*addr),
            ServerSpec::Host { .. } | ServerSpec::Srv(_) => None,
        }
    }
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSpec::Addr(addr) => write!(f, "{addr}"),
            ServerSpec::Host { name, port } => write!(f, "{name}:{port}"),
            ServerSpec::Srv(name) => f.write_str(name),
        }
    }
}

/// A DNS name as servers are written: dot-separated labels of letters, digits, `-` and `_`
/// (docker compose names may hold `_`), without the root's trailing dot.
fn valid_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(valid_label)
}

fn valid_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub kind: WorkerType,
    pub servers: Vec<ServerSpec>,
    pub paths: Vec<Regex>,
    pub get_paths: Vec<Regex>,
    pub balance: Balance,
    pub maxconn: u32,
    pub queue_timeout: Duration,
    pub server_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    pub fallback_to_main: bool,
    /// main only: the separate budget of requests that fell back to main.
    pub failover_maxconn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    /// Port of the health listener on the server's address (Synapse: 8080).
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

#[derive(Debug, Clone)]
pub struct WellKnown {
    pub server: Option<Bytes>,
    pub client: Option<Bytes>,
    pub support: Option<Bytes>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub redirect: Option<HeaderValue>,
}

/// The chart's headers on the well-known documents.
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

impl Settings {
    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Settings::parse(path, &text)
    }

    /// Parse and validate configuration text; `path` names it in errors and anchors
    /// relative document paths.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            ConfigError {
                file: path.to_path_buf(),
                key: if key == "." { String::new() } else { key },
                message: e.into_inner().to_string(),
            }
        })?;
        Checker { file: path }.settings(raw)
    }
}

/// Turns the raw file into settings; every error names the key it is about.
struct Checker<'a> {
    file: &'a Path,
}

impl Checker<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn settings(&self, raw: RawFile) -> Result<Settings, ConfigError> {
        let listeners = self.listeners(raw.listeners)?;
        let shutdown = raw.shutdown.unwrap_or_default();
        let timeouts = raw.timeouts.unwrap_or_default();
        let timeouts = Timeouts {
            connect: self.duration("timeouts.connect", timeouts.connect, 5)?,
            request_headers: self.duration(
                "timeouts.request_headers",
                timeouts.request_headers,
                10,
            )?,
            client_idle: self.duration("timeouts.client_idle", timeouts.client_idle, 900)?,
            server: self.duration("timeouts.server", timeouts.server, 180)?,
        };
        let access_log = match raw.access_log.as_deref() {
            None | Some("haproxy") => AccessLogFormat::Haproxy,
            Some("json") => AccessLogFormat::Json,
            Some(other) => {
                return Err(self.err(
                    "access_log",
                    format!("expected `haproxy` or `json`, found `{other}`"),
                ))
            }
        };
        let access = raw.access.unwrap_or_default();
        let trusted_proxies = self.networks("access.trusted_proxies", &access.trusted_proxies)?;
        let admin_allow = access
            .admin_allow
            .map(|list| self.networks("access.admin_allow", &list))
            .transpose()?;

        let discovery = self.discovery(raw.discovery.unwrap_or_default())?;
        let ess_version = match raw.synapse.ess_version {
            Some(doc) => self.document("synapse.ess_version", doc)?,
            None => Bytes::from(format!(
                r#"{{"version": "{}", "edition": "community"}}"#,
                env!("CARGO_PKG_VERSION")
            )),
        };
        let pools = self.pools(raw.synapse.pools, timeouts.server)?;
        let well_known = self.well_known(raw.well_known.unwrap_or_default())?;

        Ok(Settings {
            source: self.file.to_path_buf(),
            listeners,
            threads: raw.threads.unwrap_or(0),
            grace_period: self.whole_seconds("shutdown.grace_period", shutdown.grace_period, 5)?,
            drain_timeout: self.whole_seconds(
                "shutdown.drain_timeout",
                shutdown.drain_timeout,
                1,
            )?,
            timeouts,
            access_log,
            trusted_proxies,
            admin_allow,
            discovery,
            mas: raw.synapse.mas,
            ess_version,
            pools,
            well_known,
        })
    }

    fn discovery(&self, raw: file::Discovery) -> Result<DiscoverySettings, ConfigError> {
        let family = match raw.family.as_deref() {
            None | Some("ipv4") => AddressFamily::Ipv4,
            Some("ipv6") => AddressFamily::Ipv6,
            Some(other) => {
                return Err(self.err(
                    "discovery.family",
                    format!("expected `ipv4` or `ipv6`, found `{other}`"),
                ))
            }
        };
        let nameservers = raw
            .nameservers
            .iter()
            .enumerate()
            .map(|(i, text)| {
                // A bare address means DNS's own port.
                text.parse::<SocketAddr>()
                    .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        self.err(
                            format!("discovery.nameservers[{i}]"),
                            format!(
                                "expected an address like 10.0.0.10, 127.0.0.1:5353 or \
                                 [fd00::10]:53, found `{text}`"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let interval = self.duration("discovery.interval", raw.interval, 1)?;
        if interval.is_zero() {
            return Err(self.err("discovery.interval", "expected more than 0s"));
        }
        Ok(DiscoverySettings {
            interval,
            hold: self.duration("discovery.hold", raw.hold, 600)?,
            family,
            nameservers,
        })
    }

    fn listeners(&self, raw: Option<file::Listeners>) -> Result<Listeners, ConfigError> {
        let Some(raw) = raw else {
            let any = |port| Some(SocketAddr::from(([0, 0, 0, 0], port)));
            return Ok(Listeners {
                synapse: any(8008),
                blackhole: any(8009),
                well_known: any(8010),
                metrics: any(8405),
                startup: any(8406),
            });
        };
        let parse = |key: &str, value: Option<String>| -> Result<Option<SocketAddr>, ConfigError> {
            value
                .map(|v| {
                    v.parse::<SocketAddr>().map_err(|_| {
                        self.err(
                            format!("listeners.{key}"),
                            format!(
                                "expected an address like 0.0.0.0:8008 or [::]:8008, found `{v}`"
                            ),
                        )
                    })
                })
                .transpose()
        };
        let listeners = Listeners {
            synapse: parse("synapse", raw.synapse)?,
            blackhole: parse("blackhole", raw.blackhole)?,
            well_known: parse("well_known", raw.well_known)?,
            metrics: parse("metrics", raw.metrics)?,
            startup: parse("startup", raw.startup)?,
        };

        // Two listeners on one port overlap when their addresses are equal or either is the
        // wildcard of its family.
        let all = listeners.by_key();
        for (i, (name_a, a)) in all.iter().enumerate() {
            for (name_b, b) in &all[i + 1..] {
                if let (Some(a), Some(b)) = (a, b) {
                    let same_ip = a.ip() == b.ip()
                        || (a.is_ipv4() == b.is_ipv4()
                            && (a.ip().is_unspecified() || b.ip().is_unspecified()));
                    if a.port() == b.port() && same_ip {
                        return Err(self.err(
                            format!("listeners.{name_b}"),
                            format!("{b} overlaps listeners.{name_a} ({a})"),
                        ));
                    }
                }
            }
        }
        Ok(listeners)
    }

    fn duration(
        &self,
        key: &str,
        value: Option<String>,
        default_secs: u64,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(Duration::from_secs(default_secs)),
            Some(text) => humantime::parse_duration(&text).map_err(|_| {
                self.err(
                    key,
                    format!("expected a duration like 5s, 500ms or 2m, found `{text}`"),
                )
            }),
        }
    }

    /// Pingora counts shutdown periods in whole seconds.
    fn whole_seconds(
        &self,
        key: &str,
        value: Option<String>,
        default_secs: u64,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration(key, value, default_secs)?;
        if d.subsec_nanos() != 0 {
            return Err(self.err(key, format!("expected whole seconds, found {d:?}")));
        }
        Ok(d)
    }

    fn networks(&self, key: &str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                // A bare address is a network of one.
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        self.err(
                            format!("{key}[{i}]"),
                            format!(
                                "expected a CIDR like 10.0.0.0/8 or an address, found `{text}`"
                            ),
                        )
                    })
            })
            .collect()
    }

    fn document(&self, key: &str, doc: file::Document) -> Result<Bytes, ConfigError> {
        let text = match (doc.inline, doc.file) {
            (Some(serde_yaml_ng::Value::String(text)), None) => text,
            (Some(value), None) => serde_json::to_string(&value).map_err(|e| {
                self.err(format!("{key}.inline"), format!("not JSON-compatible: {e}"))
            })?,
            (None, Some(path)) => {
                let base = self.file.parent().unwrap_or_else(|| Path::new("."));
                let full = base.join(&path);
                std::fs::read_to_string(&full).map_err(|e| {
                    self.err(
                        format!("{key}.file"),
                        format!("cannot read {}: {e}", full.display()),
                    )
                })?
            }
            _ => return Err(self.err(key, "expected exactly one of `inline` or `file`")),
        };
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| self.err(key, format!("expected a JSON document: {e}")))?;
        Ok(Bytes::from(text))
    }

    fn pools(
        &self,
        raw: BTreeMap<String, file::Pool>,
        server_timeout: Duration,
    ) -> Result<Vec<PoolSettings>, ConfigError> {
        let mut pools = Vec::new();
        for (name, pool) in raw {
            let key = format!("synapse.pools.{name}");
            let kind: WorkerType = name.parse().map_err(|_| {
                let known: Vec<&str> = WorkerType::ALL.iter().map(|w| w.as_str()).collect();
                self.err(
                    &key,
                    format!("unknown pool; expected one of {}", known.join(", ")),
                )
            })?;
            pools.push(self.pool(&key, kind, pool, server_timeout)?);
        }
        if !pools.iter().any(|p| p.kind == WorkerType::Main) {
            return Err(self.err("synapse.pools.main", "the main pool is required"));
        }
        // The chart emits its route list in alphabetical worker-type order, which is the
        // order of `WorkerType` after main.
        pools.sort_by_key(|p| p.kind);
        Ok(pools)
    }

    fn pool(
        &self,
        key: &str,
        kind: WorkerType,
        raw: file::Pool,
        default_server_timeout: Duration,
    ) -> Result<PoolSettings, ConfigError> {
        let servers = raw
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| self.server(&format!("{key}.servers[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;

        let regexes = |field: &str, list: Option<Vec<String>>, default: Vec<&str>| {
            if kind == WorkerType::Main && list.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(self.err(
                    format!("{key}.{field}"),
                    "main takes every path no other pool takes; it has no path list",
                ));
            }
            let list: Vec<String> =
                list.unwrap_or_else(|| default.into_iter().map(String::from).collect());
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    Regex::new(r).map_err(|e| {
                        self.err(format!("{key}.{field}[{i}]"), format!("bad regex: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let paths = regexes("paths", raw.paths, kind.default_paths())?;
        let get_paths = regexes("get_paths", raw.get_paths, kind.default_get_paths())?;

        let balance = match raw.balance {
            None => kind.default_balance(),
            Some(text) => text.parse().map_err(|_| {
                self.err(
                    format!("{key}.balance"),
                    format!(
                        "expected round-robin, uri, source, access-token or room, found `{text}`"
                    ),
                )
            })?,
        };
        let maxconn = raw.maxconn.unwrap_or(kind.default_maxconn());
        if maxconn == 0 {
            return Err(self.err(format!("{key}.maxconn"), "expected at least 1"));
        }
        let failover_maxconn = raw.failover_maxconn.unwrap_or(250);
        if raw.failover_maxconn.is_some() && kind != WorkerType::Main {
            return Err(self.err(
                format!("{key}.failover_maxconn"),
                "only the main pool has a fail-over budget",
            ));
        }
        let queue_timeout = match raw.queue_timeout {
            None => kind.default_queue_timeout(),
            text => self.duration(&format!("{key}.queue_timeout"), text, 0)?,
        };
        let server_timeout = match raw.server_timeout {
            None => default_server_timeout,
            text => self.duration(&format!("{key}.server_timeout"), text, 0)?,
        };
        let fallback_to_main = match raw.fallback_to_main {
            None => kind.can_fall_back(),
            Some(true) if !kind.can_fall_back() => {
                return Err(self.err(
                    format!("{key}.fallback_to_main"),
                    format!("{kind} cannot fall back to main: main does not serve its state"),
                ))
            }
            Some(value) => value,
        };
        let health_check = match raw.health_check {
            Some(file::HealthCheckOrOff::Enabled(false)) => None,
            None | Some(file::HealthCheckOrOff::Enabled(true)) => {
                Some(self.health_check(key, file::HealthCheck::default())?)
            }
            Some(file::HealthCheckOrOff::Tuned(hc)) => Some(self.health_check(key, hc)?),
        };

        Ok(PoolSettings {
            kind,
            servers,
            paths,
            get_paths,
            balance,
            maxconn,
            queue_timeout,
            server_timeout,
            health_check,
            fallback_to_main,
            failover_maxconn,
        })
    }

    fn server(&self, key: &str, text: &str) -> Result<ServerSpec, ConfigError> {
        let bad = |why: &str| {
            self.err(
                key,
                format!(
                    "expected host:port, ip:port, [ipv6]:port or an SRV name \
                     _service._tcp.name{why}, found `{text}`"
                ),
            )
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(bad(" (port 0 is not a port)"));
            }
            return Ok(ServerSpec::Addr(addr));
        }

        // An SRV name carries its ports in the answer; `_` cannot start a host name.
        if text.starts_with('_') {
            if text.contains(':') {
                return Err(bad(" (an SRV name takes no port: the answer has them)"));
            }
            let labels: Vec<&str> = text.trim_end_matches('.').split('.').collect();
            let service = labels.first().and_then(|l| l.strip_prefix('_'));
            if labels.len() < 3
                || !service.is_some_and(|s| valid_label(s) && !s.contains('_'))
                || !labels[1].eq_ignore_ascii_case("_tcp")
                || !valid_name(&labels[2..].join("."))
            {
                return Err(bad(""));
            }
            return Ok(ServerSpec::Srv(text.to_string()));
        }

        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(bad(" (a host name needs a port)"));
        };
        if host.contains(':') {
            return Err(bad(" (an IPv6 address goes in brackets)"));
        }
        let port: u16 = port.parse().map_err(|_| bad(""))?;
        if port == 0 {
            return Err(bad(" (port 0 is not a port)"));
        }
        if !valid_name(host.trim_end_matches('.')) {
            return Err(bad(""));
        }
        Ok(ServerSpec::Host {
            name: host.to_string(),
            port,
        })
    }

    fn health_check(
        &self,
        pool_key: &str,
        raw: file::HealthCheck,
    ) -> Result<HealthCheck, ConfigError> {
        let key = format!("{pool_key}.health_check");
        let path = raw.path.unwrap_or_else(|| "/health".into());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                format!("{key}.path"),
                format!("expected a path like /health, found `{path}`"),
            ));
        }
        let fall = raw.fall.unwrap_or(3);
        let rise = raw.rise.unwrap_or(2);
        if fall == 0 || rise == 0 {
            return Err(self.err(key, "fall and rise must be at least 1"));
        }
        Ok(HealthCheck {
            path,
            port: raw.port.unwrap_or(8080),
            interval: self.duration(&format!("{key}.interval"), raw.interval, 2)?,
            timeout: self.duration(&format!("{key}.timeout"), raw.timeout, 2)?,
            fall,
            rise,
        })
    }

    fn well_known(&self, raw: file::WellKnown) -> Result<WellKnown, ConfigError> {
        let doc = |name: &str, d: Option<file::Document>| {
            d.map(|d| self.document(&format!("well_known.{name}"), d))
                .transpose()
        };
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut overrides = raw.headers;
        let header = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), ConfigError> {
            let key = format!("well_known.headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.err(&key, "not a valid header name"))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| self.err(&key, "not a valid header value"))?;
            Ok((n, v))
        };
        for (name, default) in WELL_KNOWN_HEADERS {
            let chosen = overrides
                .keys()
                .find(|k| k.eq_ignore_ascii_case(name))
                .cloned()
                .map(|k| overrides.remove(&k).flatten());
            match chosen {
                None => headers.push(header(name, default)?),
                Some(Some(value)) => headers.push(header(name, &value)?),
                Some(None) => {} // removed by the operator
            }
        }
        for (name, value) in overrides {
            if let Some(value) = value {
                headers.push(header(&name, &value)?);
            }
        }
        let redirect = raw
            .redirect
            .map(|url| {
                let ok = url.starts_with("https://") || url.starts_with("http://");
                HeaderValue::from_str(&url)
                    .ok()
                    .filter(|_| ok)
                    .ok_or_else(|| {
                        self.err(
                            "well_known.redirect",
                            format!("expected an http(s) URL, found `{url}`"),
                        )
                    })
            })
            .transpose()?;

        Ok(WellKnown {
            server: doc("server", raw.server)?,
            client: doc("client", raw.client)?,
            support: doc("support", raw.support)?,
            headers,
            redirect,
        })
    }
}

#[cfg(test)]
mod tests;
