//! What the matrix-stack chart knows about each Synapse worker type: its path regexes (from
//! `worker-routes.txt`, the chart's lists), balance mode, per-server maxconn, queue timeout
//! and whether it may fall back to main. Kept apart from the router's own table so the
//! HAProxy reference does not inherit the router's mistakes.

use std::time::Duration;

const WORKER_ROUTES: &str = include_str!("worker-routes.txt");

/// How a backend picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// Whole URI, path and query.
    Uri,
    /// Client address.
    Source,
    AccessToken,
    /// event-creator: room id from the path, createRoom by access token.
    Room,
}

impl Balance {
    pub fn parse(text: &str) -> Option<Balance> {
        Some(match text {
            "round-robin" => Balance::RoundRobin,
            "uri" => Balance::Uri,
            "source" => Balance::Source,
            "access-token" => Balance::AccessToken,
            "room" => Balance::Room,
            _ => return None,
        })
    }
}

/// The chart's defaults for one worker type.
#[derive(Debug, Clone, Copy)]
pub struct WorkerType {
    pub name: &'static str,
    pub balance: Balance,
    pub maxconn: u32,
    pub queue_timeout: Duration,
    pub can_fall_back: bool,
}

const fn kind(name: &'static str, balance: Balance, maxconn: u32) -> WorkerType {
    WorkerType {
        name,
        balance,
        maxconn,
        queue_timeout: Duration::from_secs(60),
        can_fall_back: true,
    }
}

const fn no_fallback(mut kind: WorkerType) -> WorkerType {
    kind.can_fall_back = false;
    kind
}

const fn short_queue(mut kind: WorkerType) -> WorkerType {
    kind.queue_timeout = Duration::from_secs(5);
    kind
}

use Balance::{AccessToken, Room, RoundRobin, Source, Uri};

/// main first, then the chart's alphabetical order, which is also its route order.
pub const WORKER_TYPES: [WorkerType; 19] = [
    no_fallback(kind("main", RoundRobin, 250)),
    kind("account-data", RoundRobin, 500),
    kind("client-reader", RoundRobin, 500),
    kind("device-lists", RoundRobin, 500),
    kind("encryption", RoundRobin, 500),
    kind("event-creator", Room, 500),
    kind("federation-inbound", Source, 500),
    kind("federation-reader", Uri, 500),
    kind("initial-synchrotron", AccessToken, 50),
    kind("mas-helper", RoundRobin, 500),
    no_fallback(kind("media-repository", RoundRobin, 500)),
    kind("presence-writer", RoundRobin, 500),
    kind("push-rules", RoundRobin, 500),
    kind("receipts", RoundRobin, 500),
    short_queue(kind("sliding-sync", AccessToken, 2000)),
    no_fallback(kind("sso-login", RoundRobin, 500)),
    short_queue(kind("synchrotron", AccessToken, 2000)),
    kind("typing-persister", RoundRobin, 500),
    kind("user-dir", RoundRobin, 500),
];

pub fn worker_type(name: &str) -> Option<&'static WorkerType> {
    WORKER_TYPES.iter().find(|kind| kind.name == name)
}

/// The chart's path regexes for a worker type: the general list, or with `get_only` the
/// list tried first for GET and HEAD.
pub fn default_paths(name: &str, get_only: bool) -> Vec<String> {
    let mut in_get_section = false;
    let mut paths = Vec::new();
    for line in WORKER_ROUTES.lines() {
        if line.starts_with("# GET and HEAD only") {
            in_get_section = true;
        }
        if line.starts_with('#') || line.trim().is_empty() || in_get_section != get_only {
            continue;
        }
        if let Some((regex, pool)) = line.split_once(' ') {
            if pool == name {
                paths.push(regex.to_string());
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_file_names_only_known_worker_types() {
        for line in WORKER_ROUTES.lines().filter(|l| !l.starts_with('#')) {
            let (_, pool) = line.split_once(' ').expect("regex and pool");
            assert!(worker_type(pool).is_some(), "unknown pool in {line:?}");
        }
    }

    #[test]
    fn first_route_of_the_full_table_is_account_data_tags() {
        assert_eq!(
            default_paths("account-data", false)[0],
            "^/_matrix/client/(r0|v3|unstable)/.*/tags"
        );
    }

    #[test]
    fn only_client_reader_has_get_only_routes() {
        let with_get: Vec<_> = WORKER_TYPES
            .iter()
            .filter(|kind| !default_paths(kind.name, true).is_empty())
            .map(|kind| kind.name)
            .collect();
        assert_eq!(with_get, ["client-reader"]);
        assert_eq!(default_paths("client-reader", false).len(), 37);
    }
}
