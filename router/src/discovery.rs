//! Server discovery: pools whose servers are DNS names (`host:port` for A or AAAA records,
//! `_service._tcp.name` for SRV records) are resolved again every `discovery.interval` in
//! the background, never on a request's path. A name whose lookups fail keeps its last good
//! answer for `discovery.hold`, then loses its servers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{IntoName, Name, RData};
use hickory_resolver::TokioResolver;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{AddressFamily, DiscoverySettings, ServerSpec};
use crate::state::{Router, Shared};

/// How long one DNS query may take before it counts as failed, as the chart's HAProxy
/// resolvers wait (`timeout retry 1s`): names are asked again every interval, so a slower
/// answer would be stale anyway.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the router waits for DNS before it starts serving: the resolver asks each
/// server up to twice.
const FIRST_ROUND_LIMIT: Duration = Duration::from_secs(3);

pub struct Discovery {
    pub shared: Arc<Shared>,
}

/// Set every pool whose servers are all address literals; returns whether any pool still
/// needs DNS.
pub fn apply_literals(router: &Router) -> bool {
    let mut needs_dns = false;
    for (index, settings) in router.settings.pools.iter().enumerate() {
        let literals: Option<Vec<SocketAddr>> =
            settings.servers.iter().map(ServerSpec::literal).collect();
        match literals {
            Some(addrs) => router.set_pool_addresses(index, &addrs),
            None => needs_dns = true,
        }
    }
    needs_dns
}

#[async_trait]
impl BackgroundService for Discovery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut resolver = ResolverSlot::default();
        let mut names: HashMap<ServerSpec, NameState> = HashMap::new();
        loop {
            // The live state of this round: a reload may have replaced it since the last.
            let router = self.shared.router.load_full();
            let started = Instant::now();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = round(&self.shared, &router, &mut resolver, &mut names) => {}
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(started + router.settings.discovery.interval) => {}
            }
        }
    }
}

/// Resolve every name once before the router serves, so that a pool given as names does
/// not answer its first requests with no server. Waits at most [`FIRST_ROUND_LIMIT`]: a
/// name still unanswered then is left to the background rounds.
pub async fn first_round(shared: &Shared) {
    let router = shared.router.load_full();
    let mut resolver = ResolverSlot::default();
    let mut names = HashMap::new();
    let lookups = round(shared, &router, &mut resolver, &mut names);
    if tokio::time::timeout(FIRST_ROUND_LIMIT, lookups)
        .await
        .is_err()
    {
        tracing::warn!(
            waited = %humantime::format_duration(FIRST_ROUND_LIMIT),
            "DNS did not answer before serving; pools given as names fill when it does"
        );
    }
}

/// One round: look every name up and give the pools their addresses.
async fn round(
    shared: &Shared,
    router: &Router,
    resolver: &mut ResolverSlot,
    names: &mut HashMap<ServerSpec, NameState>,
) {
    let settings = &router.settings.discovery;
    let wanted: BTreeSet<ServerSpec> = router
        .settings
        .pools
        .iter()
        .flat_map(|p| &p.servers)
        .filter(|s| s.literal().is_none())
        .cloned()
        .collect();
    names.retain(|spec, _| wanted.contains(spec));
    if wanted.is_empty() {
        return;
    }
    let results = resolve(resolver.get(settings), &wanted, settings.family).await;
    let now = Instant::now();
    for (spec, result) in results {
        shared.metrics.discovery(&spec.to_string(), result.is_ok());
        let state = names.entry(spec.clone()).or_default();
        state.record(&spec, result, now, settings.hold);
    }
    update_pools(router, names);
}

/// What is known of one name across rounds.
#[derive(Debug, Default)]
struct NameState {
    /// The addresses in use: the last good answer, until the hold runs out.
    answer: Vec<SocketAddr>,
    /// When the last good answer came; `None` before the first.
    answered_at: Option<Instant>,
    /// Whether lookups fail now; changes of it are logged, not every failed round.
    failing: bool,
}

impl NameState {
    fn record(
        &mut self,
        spec: &ServerSpec,
        result: Result<Vec<SocketAddr>, String>,
        now: Instant,
        hold: Duration,
    ) {
        match result {
            Ok(answer) => {
                if self.failing {
                    self.failing = false;
                    tracing::info!(server = %spec, addresses = answer.len(), "DNS answers again");
                }
                // A name with no address leaves its pool without that server: say so once
                // when it starts, not every interval.
                if answer.is_empty() && (self.answered_at.is_none() || !self.answer.is_empty()) {
                    tracing::warn!(server = %spec, "the name has no address of the configured family");
                }
                self.answer = answer;
                self.answered_at = Some(now);
            }
            Err(error) => {
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        server = %spec,
                        %error,
                        kept = self.answer.len(),
                        hold = %humantime::format_duration(hold),
                        "lookup failed; keeping the last answer until DNS answers or the hold ends"
                    );
                }
                let held_out = self
                    .answered_at
                    .is_none_or(|at| now.duration_since(at) >= hold);
                if held_out && !self.answer.is_empty() {
                    tracing::warn!(
                        server = %spec,
                        %error,
                        removed = self.answer.len(),
                        "no DNS answer for the whole hold; the name's servers are removed"
                    );
                    self.answer.clear();
                }
            }
        }
    }
}

/// Give every pool that has names its current addresses, logging who joined and left.
fn update_pools(router: &Router, names: &HashMap<ServerSpec, NameState>) {
    for (index, settings) in router.settings.pools.iter().enumerate() {
        if settings.servers.iter().all(|s| s.literal().is_some()) {
            continue;
        }
        let Some(pool) = router.pools.get(index) else {
            continue;
        };

        // Sorted, so the order (and so round robin's rotation) does not follow DNS's.
        let mut found: BTreeMap<SocketAddr, &ServerSpec> = BTreeMap::new();
        for spec in &settings.servers {
            let addrs = match spec.literal() {
                Some(addr) => vec![addr],
                None => names
                    .get(spec)
                    .map(|n| n.answer.clone())
                    .unwrap_or_default(),
            };
            for addr in addrs {
                found.entry(addr).or_insert(spec);
            }
        }

        let before = pool.upstreams();
        let addrs: Vec<SocketAddr> = found.keys().copied().collect();
        router.set_pool_addresses(index, &addrs);
        let after = pool.upstreams();

        for upstream in after
            .iter()
            .filter(|u| !before.iter().any(|b| b.addr == u.addr))
        {
            let from = found
                .get(&upstream.addr)
                .map_or_else(String::new, |s| s.to_string());
            tracing::info!(
                backend = %pool.backend,
                server = %upstream.name,
                addr = %upstream.addr,
                %from,
                "server joined the pool"
            );
        }
        for upstream in before.iter().filter(|u| !found.contains_key(&u.addr)) {
            tracing::info!(
                backend = %pool.backend,
                server = %upstream.name,
                addr = %upstream.addr,
                "server left the pool"
            );
        }
    }
}

/// Look every name up at once; a name that could not be asked fails with the reason.
async fn resolve(
    resolver: Result<TokioResolver, String>,
    wanted: &BTreeSet<ServerSpec>,
    family: AddressFamily,
) -> Vec<(ServerSpec, Result<Vec<SocketAddr>, String>)> {
    let resolver = match resolver {
        Ok(resolver) => resolver,
        Err(error) => {
            return wanted
                .iter()
                .map(|s| (s.clone(), Err(error.clone())))
                .collect()
        }
    };
    let mut lookups = JoinSet::new();
    for spec in wanted {
        let resolver = resolver.clone();
        let spec = spec.clone();
        lookups.spawn(async move {
            let result = lookup(&resolver, &spec, family).await;
            (spec, result)
        });
    }
    let mut results = Vec::with_capacity(wanted.len());
    while let Some(joined) = lookups.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            // The name keeps its state; it is asked again next round.
            Err(e) => tracing::error!(error = %e, "a DNS lookup task ended abnormally"),
        }
    }
    results
}

/// One server spec's addresses, sorted. A name that does not exist, or has no records of
/// the type asked, is an answer with no servers; only a failure to get an answer is an
/// error.
async fn lookup(
    resolver: &TokioResolver,
    spec: &ServerSpec,
    family: AddressFamily,
) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = match spec {
        ServerSpec::Addr(addr) => vec![*addr],
        ServerSpec::Host { name, port } => addresses(resolver, name.as_str(), family)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, *port))
            .collect(),
        ServerSpec::Srv(name) => srv_targets(resolver, name, family).await?,
    };
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The A or AAAA records of a name, of `family` only.
async fn addresses(
    resolver: &TokioResolver,
    name: impl IntoName,
    family: AddressFamily,
) -> Result<Vec<IpAddr>, String> {
    match resolver.lookup_ip(name).await {
        Ok(found) => Ok(found
            .iter()
            .filter(|ip| family_accepts(family, *ip))
            .collect()),
        Err(e) if no_such_records(&e) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// The targets of an SRV name with their ports. Addresses from the answer's additional
/// section are used when it has them (CoreDNS sends them), other targets are looked up.
async fn srv_targets(
    resolver: &TokioResolver,
    name: &str,
    family: AddressFamily,
) -> Result<Vec<SocketAddr>, String> {
    let lookup = match resolver.srv_lookup(name).await {
        Ok(lookup) => lookup,
        Err(e) if no_such_records(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let records: Vec<_> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            // A target of "." says the service is not offered there (RFC 2782).
            RData::SRV(srv) if !srv.target.is_root() => Some(srv),
            _ => None,
        })
        .collect();

    // RFC 2782: only the lowest priority is used while it has targets; the others are
    // backups. Kubernetes gives every target priority 0.
    // TODO: a pool has no backup servers or weights, so higher priorities and SRV weights
    // are ignored.
    let Some(best) = records.iter().map(|srv| srv.priority).min() else {
        return Ok(Vec::new());
    };
    let mut addrs = Vec::new();
    for srv in records.iter().filter(|srv| srv.priority == best) {
        let mut ips = glue(lookup.additionals(), &srv.target, family);
        if ips.is_empty() {
            ips = addresses(resolver, srv.target.clone(), family).await?;
        }
        addrs.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, srv.port)));
    }
    Ok(addrs)
}

/// Addresses of `target` of `family` in an answer's additional section.
fn glue(
    additionals: &[hickory_resolver::proto::rr::Record],
    target: &Name,
    family: AddressFamily,
) -> Vec<IpAddr> {
    additionals
        .iter()
        .filter(|r| r.name == *target)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .filter(|ip| family_accepts(family, *ip))
        .collect()
}

fn family_accepts(family: AddressFamily, ip: IpAddr) -> bool {
    family.accepts(&SocketAddr::new(ip, 0))
}

/// NXDOMAIN, or a name without records of the type asked: DNS answered, with nothing.
fn no_such_records(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Dns(DnsError::NoRecordsFound(none))
            if matches!(none.response_code, ResponseCode::NXDomain | ResponseCode::NoError)
    )
}

/// The resolver for the current discovery settings, built again when a reload changes
/// them. Building one reads `/etc/resolv.conf`; when that fails it is tried every round.
#[derive(Default)]
struct ResolverSlot {
    built: Option<(DiscoverySettings, TokioResolver)>,
}

impl ResolverSlot {
    fn get(&mut self, settings: &DiscoverySettings) -> Result<TokioResolver, String> {
        if let Some((built_for, resolver)) = &self.built {
            if built_for.nameservers == settings.nameservers && built_for.family == settings.family
            {
                return Ok(resolver.clone());
            }
        }
        let resolver = build_resolver(settings).map_err(|e| {
            if settings.nameservers.is_empty() {
                format!("no DNS configuration from /etc/resolv.conf: {e}")
            } else {
                format!("cannot set up the DNS resolver: {e}")
            }
        })?;
        self.built = Some((settings.clone(), resolver.clone()));
        Ok(resolver)
    }
}

fn build_resolver(settings: &DiscoverySettings) -> Result<TokioResolver, NetError> {
    let mut builder = if settings.nameservers.is_empty() {
        // The system's servers, search list and ndots: what docker compose (Docker's
        // embedded DNS) and Kubernetes (the cluster DNS and the namespace's search list)
        // put there.
        TokioResolver::builder_tokio()?
    } else {
        let servers = settings
            .nameservers
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };

    let options = builder.options_mut();
    options.ip_strategy = match settings.family {
        AddressFamily::Ipv4 => LookupIpStrategy::Ipv4Only,
        AddressFamily::Ipv6 => LookupIpStrategy::Ipv6Only,
    };
    options.timeout = QUERY_TIMEOUT;
    // Every round must reach DNS: a cached answer would hide servers joining and leaving
    // for as long as its TTL, and Docker's embedded DNS gives 600 s.
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec::Host {
            name: "synapse-main".into(),
            port: 8008,
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("address")).collect()
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_answer_until_the_hold_ends() {
        let hold = Duration::from_secs(600);
        let start = Instant::now();
        let mut state = NameState::default();
        state.record(
            &spec(),
            Ok(addrs(&["10.0.0.1:8008", "10.0.0.2:8008"])),
            start,
            hold,
        );

        state.record(
            &spec(),
            Err("timed out".into()),
            start + Duration::from_secs(1),
            hold,
        );
        assert!(state.failing);
        assert_eq!(state.answer.len(), 2, "kept during the hold");

        state.record(
            &spec(),
            Err("timed out".into()),
            start + Duration::from_secs(599),
            hold,
        );
        assert_eq!(state.answer.len(), 2);

        state.record(&spec(), Err("timed out".into()), start + hold, hold);
        assert!(state.answer.is_empty(), "removed once the hold is over");

        state.record(
            &spec(),
            Ok(addrs(&["10.0.0.3:8008"])),
            start + hold * 2,
            hold,
        );
        assert!(!state.failing);
        assert_eq!(state.answer, addrs(&["10.0.0.3:8008"]));
    }

    #[test]
    fn the_hold_counts_from_the_last_good_answer() {
        let hold = Duration::from_secs(10);
        let start = Instant::now();
        let mut state = NameState::default();
        state.record(&spec(), Ok(addrs(&["10.0.0.1:8008"])), start, hold);
        state.record(
            &spec(),
            Err("refused".into()),
            start + Duration::from_secs(8),
            hold,
        );
        state.record(
            &spec(),
            Ok(addrs(&["10.0.0.1:8008"])),
            start + Duration::from_secs(9),
            hold,
        );
        state.record(
            &spec(),
            Err("refused".into()),
            start + Duration::from_secs(15),
            hold,
        );
        assert_eq!(
            state.answer.len(),
            1,
            "9 s + 10 s of hold has not run out at 15 s"
        );
    }

    #[test]
    fn an_empty_answer_is_an_answer_not_a_failure() {
        let hold = Duration::from_secs(600);
        let start = Instant::now();
        let mut state = NameState::default();
        state.record(&spec(), Ok(addrs(&["10.0.0.1:8008"])), start, hold);
        state.record(
            &spec(),
            Ok(Vec::new()),
            start + Duration::from_secs(1),
            hold,
        );
        assert!(state.answer.is_empty());
        assert!(!state.failing);
    }

    #[test]
    fn a_name_that_never_answered_has_no_servers() {
        let mut state = NameState::default();
        state.record(
            &spec(),
            Err("timed out".into()),
            Instant::now(),
            Duration::from_secs(600),
        );
        assert!(state.answer.is_empty());
        assert!(state.failing);
    }

    #[test]
    fn glue_of_the_other_family_is_ignored() {
        use hickory_resolver::proto::rr::rdata::{A, AAAA};
        use hickory_resolver::proto::rr::Record;
        let target = Name::from_ascii("fed-0.fed.test.").expect("name");
        let other = Name::from_ascii("fed-1.fed.test.").expect("name");
        let additionals = vec![
            Record::from_rdata(target.clone(), 5, RData::A(A::new(10, 0, 0, 1))),
            Record::from_rdata(
                target.clone(),
                5,
                RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            ),
            Record::from_rdata(other, 5, RData::A(A::new(10, 0, 0, 2))),
        ];
        assert_eq!(
            glue(&additionals, &target, AddressFamily::Ipv4),
            vec![IpAddr::from([10, 0, 0, 1])]
        );
        assert_eq!(
            glue(&additionals, &target, AddressFamily::Ipv6),
            vec!["fd00::1".parse::<IpAddr>().expect("ip")]
        );
    }
}
