//! Path routing: which pool a request goes to. The chart's HAProxy walks a list of regexes
//! and takes the first match; here each list is one `RegexSet`, matched in one pass.

use regex::{Regex, RegexSet};

use crate::config::PoolSettings;
use crate::worker::WorkerType;

/// Route lists compiled for one configuration. Pool targets are indexes into the
/// router's pool list, whose index 0 is main.
pub struct RouteTable {
    get_only: Matcher,
    any: Matcher,
    initial_sync: Option<InitialSync>,
}

struct Matcher {
    set: RegexSet,
    targets: Vec<usize>,
}

impl Matcher {
    fn new(entries: Vec<(&Regex, usize)>) -> Self {
        let set = RegexSet::new(entries.iter().map(|(r, _)| r.as_str()))
            // The same patterns compiled one by one when the configuration was checked.
            .unwrap_or_else(|_| RegexSet::empty());
        Matcher {
            set,
            targets: entries.into_iter().map(|(_, t)| t).collect(),
        }
    }

    /// The target of the first pattern, in list order, that matches.
    fn first(&self, path: &str) -> Option<usize> {
        self.set
            .matches(path)
            .iter()
            .next()
            .map(|i| self.targets[i])
    }
}

/// The chart's initial-synchrotron rules: expensive full syncs get their own pool.
struct InitialSync {
    pool: usize,
    always: RegexSet,
    sync: Regex,
    events: Regex,
}

impl RouteTable {
    /// `pools` in router order (index 0 is main, the rest in the chart's order).
    pub fn new(pools: &[PoolSettings]) -> Self {
        let entries = |get_only: bool| -> Vec<(&Regex, usize)> {
            pools
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    let list = if get_only { &p.get_paths } else { &p.paths };
                    list.iter().map(move |r| (r, i))
                })
                .collect()
        };
        let initial_sync = pools
            .iter()
            .position(|p| p.kind == WorkerType::InitialSynchrotron)
            .map(|pool| InitialSync {
                pool,
                always: RegexSet::new([
                    r"^/_matrix/client/(api/v1|r0|v3)/initialSync$",
                    r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
                ])
                .unwrap_or_else(|_| RegexSet::empty()),
                sync: Regex::new(r"^/_matrix/client/(r0|v3)/sync$")
                    .unwrap_or_else(|_| Regex::new("$^").expect("trivial regex")),
                events: Regex::new(r"^/_matrix/client/(api/v1|r0|v3)/events$")
                    .unwrap_or_else(|_| Regex::new("$^").expect("trivial regex")),
            });
        RouteTable {
            get_only: Matcher::new(entries(true)),
            any: Matcher::new(entries(false)),
            initial_sync,
        }
    }

    /// The pool for a request by path alone: GET and HEAD try the GET-only list first; no
    /// match is main (0).
    pub fn route(&self, is_get_or_head: bool, path: &str) -> usize {
        if is_get_or_head {
            if let Some(target) = self.get_only.first(path) {
                return target;
            }
        }
        self.any.first(path).unwrap_or(0)
    }

    /// The initial-synchrotron pool when the request is an initial sync: `initialSync`,
    /// `/sync` with `full_state=true` or without `since`, `/events` without `from`.
    pub fn initial_sync(&self, path: &str, query: Option<&str>) -> Option<usize> {
        let rules = self.initial_sync.as_ref()?;
        let param = |name: &str| query_param(query, name);
        let matches = rules.always.is_match(path)
            || (rules.sync.is_match(path)
                && (param("full_state") == Some("true") || param("since").is_none()))
            || (rules.events.is_match(path) && param("from").is_none());
        matches.then_some(rules.pool)
    }
}

/// The raw value of the first query parameter called `name`, as HAProxy's `urlp`.
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use std::path::Path;

    fn table(yaml: &str) -> (RouteTable, Vec<WorkerType>) {
        let settings = Settings::parse(Path::new("test.yaml"), yaml).expect("valid config");
        let kinds = settings.pools.iter().map(|p| p.kind).collect();
        (RouteTable::new(&settings.pools), kinds)
    }

    const ALL_WORKERS: &str = r#"
synapse:
  pools:
    main: {servers: []}
    account-data: {servers: []}
    client-reader: {servers: []}
    device-lists: {servers: []}
    encryption: {servers: []}
    event-creator: {servers: []}
    federation-inbound: {servers: []}
    federation-reader: {servers: []}
    initial-synchrotron: {servers: []}
    mas-helper: {servers: []}
    media-repository: {servers: []}
    presence-writer: {servers: []}
    push-rules: {servers: []}
    receipts: {servers: []}
    sliding-sync: {servers: []}
    sso-login: {servers: []}
    synchrotron: {servers: []}
    typing-persister: {servers: []}
    user-dir: {servers: []}
"#;

    fn route(yaml: &str, get: bool, path: &str) -> WorkerType {
        let (table, kinds) = table(yaml);
        kinds[table.route(get, path)]
    }

    #[test]
    fn first_match_in_the_charts_order_wins() {
        // account-data's `.*/tags` comes before client-reader's rooms/.../state regexes.
        let p = "/_matrix/client/v3/user/@a:x/rooms/!r:x/tags";
        assert_eq!(route(ALL_WORKERS, false, p), WorkerType::AccountData);
        // client-reader's devices$ comes before device-lists' devices(/|$).
        assert_eq!(
            route(ALL_WORKERS, false, "/_matrix/client/v3/devices"),
            WorkerType::ClientReader
        );
        assert_eq!(
            route(ALL_WORKERS, false, "/_matrix/client/v3/devices/ABC"),
            WorkerType::DeviceLists
        );
        assert_eq!(
            route(ALL_WORKERS, false, "/_matrix/federation/v1/state_ids/!r:x"),
            WorkerType::FederationReader
        );
        assert_eq!(
            route(
                ALL_WORKERS,
                false,
                "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1"
            ),
            WorkerType::EventCreator
        );
        assert_eq!(
            route(ALL_WORKERS, false, "/_matrix/client/v3/nothing"),
            WorkerType::Main
        );
    }

    #[test]
    fn paths_are_case_sensitive_and_exclude_the_query() {
        assert_eq!(
            route(ALL_WORKERS, false, "/_matrix/client/V3/sync"),
            WorkerType::Main
        );
        assert_eq!(
            route(ALL_WORKERS, false, "/_matrix/client/v3/sync"),
            WorkerType::Synchrotron
        );
    }

    #[test]
    fn get_only_list_applies_to_get_and_head_only() {
        let p = "/_synapse/admin/v2/users/@a:x";
        assert_eq!(route(ALL_WORKERS, true, p), WorkerType::ClientReader);
        assert_eq!(route(ALL_WORKERS, false, p), WorkerType::Main);
    }

    #[test]
    fn routes_only_to_configured_pools() {
        let yaml = "synapse:\n  pools:\n    main: {servers: []}\n    synchrotron: {servers: []}\n";
        assert_eq!(
            route(yaml, false, "/_matrix/federation/v1/state_ids/!r:x"),
            WorkerType::Main
        );
    }

    #[test]
    fn overridden_path_list_replaces_the_builtin_one() {
        let yaml = r#"
synapse:
  pools:
    main: {servers: []}
    federation-reader:
      servers: []
      paths: ["^/_matrix/federation/v1/state_ids/"]
"#;
        assert_eq!(
            route(yaml, false, "/_matrix/federation/v1/state_ids/!r:x"),
            WorkerType::FederationReader
        );
        assert_eq!(
            route(yaml, false, "/_matrix/federation/v1/backfill/!r:x"),
            WorkerType::Main
        );
    }

    #[test]
    fn initial_sync_rules_follow_the_chart() {
        let (table, kinds) = table(ALL_WORKERS);
        let initial =
            |path: &str, query: Option<&str>| table.initial_sync(path, query).map(|i| kinds[i]);
        let want = Some(WorkerType::InitialSynchrotron);
        assert_eq!(initial("/_matrix/client/v3/sync", None), want);
        assert_eq!(initial("/_matrix/client/v3/sync", Some("since=s1")), None);
        assert_eq!(
            initial("/_matrix/client/v3/sync", Some("since=s1&full_state=true")),
            want
        );
        assert_eq!(initial("/_matrix/client/r0/initialSync", None), want);
        assert_eq!(
            initial("/_matrix/client/v3/rooms/!r:x/initialSync", None),
            want
        );
        assert_eq!(initial("/_matrix/client/v3/events", Some("from=x")), None);
        assert_eq!(initial("/_matrix/client/v3/events", None), want);
    }

    #[test]
    fn query_params_are_raw_and_exact() {
        assert_eq!(
            query_param(Some("a=1&access_token=x%20y"), "access_token"),
            Some("x%20y")
        );
        assert_eq!(query_param(Some("since"), "since"), Some(""));
        assert_eq!(query_param(Some("sincex=1"), "since"), None);
        assert_eq!(query_param(None, "since"), None);
    }
}
