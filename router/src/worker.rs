//! Synapse worker types: the chart's defaults for each pool (path lists, balance mode,
//! limits, whether it may fall back to main).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The chart's per-type path regexes, one `regex pool` a line, in the chart's order.
const WORKER_ROUTES: &str = include_str!("../worker-routes.txt");

/// A Synapse process type, and so a pool of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerType {
    Main,
    AccountData,
    ClientReader,
    DeviceLists,
    Encryption,
    EventCreator,
    FederationInbound,
    FederationReader,
    InitialSynchrotron,
    MasHelper,
    MediaRepository,
    PresenceWriter,
    PushRules,
    Receipts,
    SlidingSync,
    SsoLogin,
    Synchrotron,
    TypingPersister,
    UserDir,
}

/// How a pool spreads requests over its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// Whole URI, path and query (`balance uri whole`).
    Uri,
    /// The client address (`balance source`), after trusted-proxy resolution.
    Source,
    /// The request's access token (`balance hdr(X-Access-Token)`).
    AccessToken,
    /// The room or user id in the path, else the path; createRoom by access token.
    Room,
}

impl WorkerType {
    pub const ALL: [WorkerType; 19] = [
        WorkerType::Main,
        WorkerType::AccountData,
        WorkerType::ClientReader,
        WorkerType::DeviceLists,
        WorkerType::Encryption,
        WorkerType::EventCreator,
        WorkerType::FederationInbound,
        WorkerType::FederationReader,
        WorkerType::InitialSynchrotron,
        WorkerType::MasHelper,
        WorkerType::MediaRepository,
        WorkerType::PresenceWriter,
        WorkerType::PushRules,
        WorkerType::Receipts,
        WorkerType::SlidingSync,
        WorkerType::SsoLogin,
        WorkerType::Synchrotron,
        WorkerType::TypingPersister,
        WorkerType::UserDir,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerType::Main => "main",
            WorkerType::AccountData => "account-data",
            WorkerType::ClientReader => "client-reader",
            WorkerType::DeviceLists => "device-lists",
            WorkerType::Encryption => "encryption",
            WorkerType::EventCreator => "event-creator",
            WorkerType::FederationInbound => "federation-inbound",
            WorkerType::FederationReader => "federation-reader",
            WorkerType::InitialSynchrotron => "initial-synchrotron",
            WorkerType::MasHelper => "mas-helper",
            WorkerType::MediaRepository => "media-repository",
            WorkerType::PresenceWriter => "presence-writer",
            WorkerType::PushRules => "push-rules",
            WorkerType::Receipts => "receipts",
            WorkerType::SlidingSync => "sliding-sync",
            WorkerType::SsoLogin => "sso-login",
            WorkerType::Synchrotron => "synchrotron",
            WorkerType::TypingPersister => "typing-persister",
            WorkerType::UserDir => "user-dir",
        }
    }

    pub fn default_balance(self) -> Balance {
        match self {
            WorkerType::EventCreator => Balance::Room,
            WorkerType::FederationInbound => Balance::Source,
            WorkerType::FederationReader => Balance::Uri,
            WorkerType::Synchrotron | WorkerType::SlidingSync | WorkerType::InitialSynchrotron => {
                Balance::AccessToken
            }
            _ => Balance::RoundRobin,
        }
    }

    pub fn default_maxconn(self) -> u32 {
        match self {
            WorkerType::Main => 250,
            WorkerType::Synchrotron | WorkerType::SlidingSync => 2000,
            WorkerType::InitialSynchrotron => 50,
            _ => 500,
        }
    }

    pub fn default_queue_timeout(self) -> Duration {
        match self {
            WorkerType::Synchrotron | WorkerType::SlidingSync => Duration::from_secs(5),
            _ => Duration::from_secs(60),
        }
    }

    /// Whether requests may go to main while this pool has no live server. Media and SSO
    /// state lives on their own workers, so main cannot stand in for them.
    pub fn can_fall_back(self) -> bool {
        !matches!(
            self,
            WorkerType::Main | WorkerType::MediaRepository | WorkerType::SsoLogin
        )
    }

    /// The chart's path regexes for this type, in order.
    pub fn default_paths(self) -> Vec<&'static str> {
        routes_of(self, false)
    }

    /// The chart's GET/HEAD-only path regexes for this type, tried before the others.
    pub fn default_get_paths(self) -> Vec<&'static str> {
        routes_of(self, true)
    }
}

/// Lines of `worker-routes.txt` for one type: before the "GET and HEAD only" comment for
/// the general list, after it for the GET list.
fn routes_of(kind: WorkerType, get_only: bool) -> Vec<&'static str> {
    let mut in_get_section = false;
    let mut paths = Vec::new();
    for line in WORKER_ROUTES.lines() {
        let line = line.trim();
        if line.starts_with("# GET and HEAD only") {
            in_get_section = true;
            continue;
        }
        if line.is_empty() || line.starts_with('#') || in_get_section != get_only {
            continue;
        }
        if let Some((regex, pool)) = line.rsplit_once(' ') {
            if pool == kind.as_str() {
                paths.push(regex);
            }
        }
    }
    paths
}

impl fmt::Display for WorkerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkerType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkerType::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or(())
    }
}

impl FromStr for Balance {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" => Ok(Balance::RoundRobin),
            "uri" => Ok(Balance::Uri),
            "source" => Ok(Balance::Source),
            "access-token" => Ok(Balance::AccessToken),
            "room" => Ok(Balance::Room),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_line_names_a_known_worker_type() {
        for line in WORKER_ROUTES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (regex, pool) = line.rsplit_once(' ').expect("regex and pool");
            assert!(pool.parse::<WorkerType>().is_ok(), "unknown pool in {line}");
            assert!(regex::Regex::new(regex).is_ok(), "bad regex in {line}");
        }
    }

    #[test]
    fn route_lists_follow_the_chart() {
        let fr = WorkerType::FederationReader.default_paths();
        assert_eq!(fr.first(), Some(&"^/_matrix/federation/v1/version$"));
        assert_eq!(fr.len(), 22);
        assert_eq!(
            WorkerType::ClientReader.default_get_paths(),
            vec!["^/_synapse/admin/v2/users/[^/]+$"]
        );
        assert!(WorkerType::Main.default_paths().is_empty());
        assert!(WorkerType::Synchrotron.default_get_paths().is_empty());
    }
}
