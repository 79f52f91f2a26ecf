//! Active health checks: `GET <path>` on each server's health port every interval; a
//! server goes down after `fall` failures in a row and comes back after `rise` passes. A
//! server that has never passed joins on its first pass.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::config::HealthCheck;
use crate::pool::{Pool, Upstream};
use crate::state::{Router, Shared};

/// How often the checker looks for checks that are due.
const TICK: Duration = Duration::from_millis(100);

pub struct HealthChecker {
    pub shared: Arc<Shared>,
}

#[derive(Default)]
struct Tracker {
    next_due: Option<Instant>,
    running: bool,
    passes: u32,
    fails: u32,
    ever_passed: bool,
}

/// Key of one check: the same address may be in two pools with different settings.
type CheckKey = (String, SocketAddr);

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut trackers: HashMap<CheckKey, Tracker> = HashMap::new();
        let mut running: JoinSet<(CheckKey, Arc<Upstream>, HealthCheck, Result<u16, String>)> =
            JoinSet::new();
        loop {
            let router = self.shared.router.load_full();
            let now = Instant::now();
            let mut present = Vec::new();
            for (pool, check, upstream) in checked(&router) {
                let key = (pool.backend.clone(), upstream.addr);
                present.push(key.clone());
                let tracker = trackers.entry(key.clone()).or_default();
                if tracker.running || tracker.next_due.is_some_and(|due| due > now) {
                    continue;
                }
                tracker.running = true;
                tracker.next_due = Some(now + check.interval);
                let check = check.clone();
                running.spawn(async move {
                    let result = probe(upstream.addr, &check).await;
                    (key, upstream, check, result)
                });
            }
            trackers.retain(|key, t| t.running || present.contains(key));

            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
                Some(Ok((key, upstream, check, result))) = running.join_next() => {
                    if let Some(tracker) = trackers.get_mut(&key) {
                        tracker.running = false;
                        let flip = record(tracker, &upstream, &check, &key.0, result);
                        if let Some(up) = flip {
                            self.shared.metrics.health_flip(&key.0, &upstream.name, up);
                        }
                        if flip == Some(true) {
                            // A server came up: queued requests may now find a place.
                            for pool in router.pools.iter().chain([&router.main_failover]) {
                                pool.wake_waiters();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Check every server once before the router serves, so that the ones that pass start up
/// instead of the router answering 429 until the background round: on a restart or an
/// upgrade the previous process served them a moment ago. Lasts as long as the slowest
/// answer, at most the largest check timeout.
pub async fn first_round(shared: &Shared) {
    let router = shared.router.load_full();
    let started = Instant::now();
    let mut probes = JoinSet::new();
    for (pool, check, upstream) in checked(&router) {
        let (check, backend) = (check.clone(), pool.backend.clone());
        probes.spawn(async move {
            let result = probe(upstream.addr, &check).await;
            (backend, upstream, result)
        });
    }
    let (mut checked, mut up) = (0, 0);
    while let Some(joined) = probes.join_next().await {
        let Ok((backend, upstream, result)) = joined else {
            continue;
        };
        checked += 1;
        let (name, addr) = (&upstream.name, upstream.addr);
        match result {
            Ok(status) if passes(status) => {
                up += 1;
                upstream.set_up(true);
                tracing::info!(backend, server = %name, %addr, "server is up");
            }
            Ok(status) => {
                tracing::warn!(backend, server = %name, %addr, reason = %format!("health check answered {status}"), "server is down")
            }
            Err(reason) => {
                tracing::warn!(backend, server = %name, %addr, %reason, "server is down")
            }
        }
    }
    if checked > 0 {
        tracing::info!(up, checked, took = ?started.elapsed(), "first health checks done");
    }
}

/// Every server of a pool that has a health check, with its pool and check.
fn checked(router: &Router) -> impl Iterator<Item = (&Pool, &HealthCheck, Arc<Upstream>)> {
    router
        .pools
        .iter()
        .zip(&router.settings.pools)
        .filter_map(|(pool, settings)| Some((pool.as_ref(), settings.health_check.as_ref()?)))
        .flat_map(|(pool, check)| {
            pool.upstreams()
                .into_iter()
                .map(move |upstream| (pool, check, upstream))
        })
}

/// Whether a health check's status counts as a pass, as HAProxy's `httpchk` counts 2xx and
/// 3xx.
fn passes(status: u16) -> bool {
    (200..400).contains(&status)
}

/// Apply one result; returns the server's new state when it flipped.
fn record(
    t: &mut Tracker,
    upstream: &Upstream,
    check: &HealthCheck,
    backend: &str,
    result: Result<u16, String>,
) -> Option<bool> {
    match result {
        Ok(status) if passes(status) => {
            t.passes += 1;
            t.fails = 0;
            let rise = if t.ever_passed { check.rise } else { 1 };
            t.ever_passed = true;
            if !upstream.is_up() && t.passes >= rise && upstream.set_up(true) {
                tracing::info!(backend, server = %upstream.name, addr = %upstream.addr, "server is up");
                return Some(true);
            }
        }
        outcome => {
            t.fails += 1;
            t.passes = 0;
            if upstream.is_up() && t.fails >= check.fall && upstream.set_up(false) {
                let reason = match outcome {
                    Ok(status) => format!("health check answered {status}"),
                    Err(e) => e,
                };
                tracing::warn!(backend, server = %upstream.name, addr = %upstream.addr, %reason, "server is down");
                return Some(false);
            }
        }
    }
    None
}

/// One HTTP/1.0 health request; returns the status code.
async fn probe(server: SocketAddr, check: &HealthCheck) -> Result<u16, String> {
    let target = SocketAddr::new(server.ip(), check.port);
    let attempt = async {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connect to {target}: {e}"))?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {target}\r\nUser-Agent: ess-router\r\nConnection: close\r\n\r\n",
            check.path
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send to {target}: {e}"))?;
        let mut head = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = stream
                .read(&mut head[len..])
                .await
                .map_err(|e| format!("read from {target}: {e}"))?;
            if n == 0 {
                break;
            }
            len += n;
        }
        parse_status(&head[..len]).ok_or_else(|| format!("{target} did not answer HTTP"))
    };
    timeout(check.timeout, attempt).await.unwrap_or_else(|_| {
        Err(format!(
            "no answer from {target} within {:?}",
            check.timeout
        ))
    })
}

/// The status code of an `HTTP/1.x NNN` status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    if !line.starts_with("HTTP/1.") {
        return None;
    }
    line.get(9..12)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            port: 8080,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
        }
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1"), None);
    }

    #[test]
    fn new_server_joins_on_first_pass_then_needs_fall_and_rise() {
        let up = Upstream::new("127.0.0.1:1".parse().expect("addr"), "main1".into(), false);
        let mut t = Tracker::default();
        let c = check();
        assert_eq!(record(&mut t, &up, &c, "b", Ok(200)), Some(true));
        assert!(up.is_up());

        for _ in 0..2 {
            assert_eq!(record(&mut t, &up, &c, "b", Err("refused".into())), None);
        }
        assert!(up.is_up(), "two failures are fewer than fall=3");
        assert_eq!(record(&mut t, &up, &c, "b", Ok(500)), Some(false));
        assert!(!up.is_up(), "a 5xx counts as a failure");

        assert_eq!(record(&mut t, &up, &c, "b", Ok(204)), None);
        assert!(!up.is_up(), "one pass is fewer than rise=2");
        assert_eq!(record(&mut t, &up, &c, "b", Ok(302)), Some(true));
        assert!(up.is_up());
    }
}
