//! The router's live state: one configuration's settings, route table and pools, swapped
//! atomically as a whole so that a request sees exactly one configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pool::{Pool, Upstream};
use crate::routes::RouteTable;
use crate::worker::WorkerType;

pub struct Router {
    pub settings: Settings,
    pub routes: RouteTable,
    /// Index 0 is main; the rest follow `settings.pools`.
    pub pools: Vec<Arc<Pool>>,
    /// Main's servers with the separate budget for requests that fell back to main.
    pub main_failover: Arc<Pool>,
}

impl Router {
    /// Build the state for `settings`. With the `previous` state (a reload), pools of the
    /// same type keep their servers, health state and request places.
    pub fn new(settings: Settings, metrics: &Arc<Metrics>, previous: Option<&Router>) -> Router {
        let pools: Vec<Arc<Pool>> = settings
            .pools
            .iter()
            .map(|p| {
                let pool = Pool::new(p, format!("synapse-{}", p.kind), p.maxconn, metrics.clone());
                if let Some(old) = previous.and_then(|r| r.pool(p.kind)) {
                    pool.adopt(old);
                }
                Arc::new(pool)
            })
            .collect();
        let main_settings = &settings.pools[0];
        let main_failover = Pool::new(
            main_settings,
            "synapse-main-failover".into(),
            main_settings.failover_maxconn,
            metrics.clone(),
        );
        if let Some(old) = previous {
            main_failover.adopt(&old.main_failover);
        }
        let main_failover = Arc::new(main_failover);
        Router {
            routes: RouteTable::new(&settings.pools),
            pools,
            main_failover,
            settings,
        }
    }

    pub fn main(&self) -> &Arc<Pool> {
        &self.pools[0]
    }

    pub fn pool(&self, kind: WorkerType) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| p.kind == kind)
    }

    /// Ready as the chart's startup frontend means it: main has a live server, and so has
    /// every pool that main cannot stand in for.
    pub fn synapse_ready(&self) -> bool {
        self.pools
            .iter()
            .all(|p| (p.kind != WorkerType::Main && p.fallback_to_main) || p.has_live_server())
    }

    /// Set a pool's servers from resolved addresses, reusing the upstreams (and so the
    /// health state) of addresses it already had; new ones start down when they are
    /// health checked, and join after their first passing check.
    pub fn set_pool_addresses(&self, index: usize, addrs: &[SocketAddr]) {
        let Some(pool) = self.pools.get(index) else {
            return;
        };
        let settings = &self.settings.pools[index];
        let existing: HashMap<SocketAddr, Arc<Upstream>> =
            pool.upstreams().into_iter().map(|u| (u.addr, u)).collect();
        if existing.len() == addrs.len() && addrs.iter().all(|a| existing.contains_key(a)) {
            return;
        }
        let taken: Vec<&str> = existing
            .values()
            .filter(|u| addrs.contains(&u.addr))
            .map(|u| u.name.as_str())
            .collect();
        let mut names = Vec::new();
        let upstreams: Vec<Arc<Upstream>> = addrs
            .iter()
            .map(|addr| match existing.get(addr) {
                Some(u) => u.clone(),
                None => {
                    // The lowest free number, like HAProxy's server-template slots.
                    let name = (1..)
                        .map(|n| format!("{}{n}", settings.kind))
                        .find(|n| !taken.contains(&n.as_str()) && !names.contains(n))
                        .unwrap_or_default();
                    names.push(name.clone());
                    Arc::new(Upstream::new(*addr, name, settings.health_check.is_none()))
                }
            })
            .collect();
        pool.set_upstreams(&upstreams);
        if index == 0 {
            self.main_failover.set_upstreams(&upstreams);
        }
    }
}

/// The state every listener and background task shares.
pub struct Shared {
    pub router: ArcSwap<Router>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(router: Router, metrics: Arc<Metrics>) -> Arc<Shared> {
        Arc::new(Shared {
            router: ArcSwap::from_pointee(router),
            metrics,
        })
    }
}
