//! Server discovery: pools whose servers are DNS names are re-resolved in the background,
//! never on a request's path. A failed lookup keeps the last good answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::ServerSpec;
use crate::state::{Router, Shared};

/// How often names are looked up again (the chart's resolvers: about every second).
const INTERVAL: Duration = Duration::from_secs(1);

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
        loop {
            let router = self.shared.router.load_full();
            for (index, settings) in router.settings.pools.iter().enumerate() {
                if settings.servers.iter().all(|s| s.literal().is_some()) {
                    continue;
                }
                if let Some(addrs) = resolve_all(&settings.servers).await {
                    router.set_pool_addresses(index, &addrs);
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }
}

/// Every address of every server; `None` when any lookup failed, so the pool keeps what it
/// had rather than shrinking on a DNS hiccup.
async fn resolve_all(specs: &[ServerSpec]) -> Option<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for spec in specs {
        match spec.literal() {
            Some(addr) => addrs.push(addr),
            None => match tokio::net::lookup_host((spec.host.as_str(), spec.port)).await {
                Ok(found) => addrs.extend(found.filter(|a| a.is_ipv4())),
                Err(e) => {
                    tracing::debug!(server = %spec, error = %e, "lookup failed, keeping the last answer");
                    return None;
                }
            },
        }
    }
    addrs.sort();
    addrs.dedup();
    Some(addrs)
}
