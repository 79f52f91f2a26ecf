//! Prometheus metrics on `/metrics`. Counters a request touches are resolved to their
//! label set once, when a pool or server is created, so a request only does atomic adds;
//! gauges of the current state (in flight, queue, server up) are read at scrape time.
//! Where HAProxy's exporter has an equivalent a dashboard uses, it is offered under the
//! `haproxy_*` name too.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::state::Router;

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Status classes as HAProxy counts them.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

pub fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    haproxy_backend_responses: IntCounterVec,
    server_responses: IntCounterVec,
    haproxy_server_responses: IntCounterVec,
    upstream_latency: HistogramVec,
    queue_time: HistogramVec,
    refused: IntCounterVec,
    health_flips: IntCounterVec,
    reloads: IntCounterVec,
    discovery: IntCounterVec,
    in_flight: IntGaugeVec,
    haproxy_server_sessions: IntGaugeVec,
    queue_length: IntGaugeVec,
    haproxy_backend_queue: IntGaugeVec,
    server_up: IntGaugeVec,
    haproxy_backend_active_servers: IntGaugeVec,
}

/// The counters of one pool (backend), resolved once.
#[derive(Clone)]
pub struct PoolMetrics {
    pub responses: [IntCounter; 6],
    haproxy_responses: [IntCounter; 6],
    pub queue_time: Histogram,
    pub refused_no_server: IntCounter,
    pub refused_queue: IntCounter,
    pub refused_connect: IntCounter,
}

/// The counters of one server in one pool, resolved once.
#[derive(Clone)]
pub struct ServerMetrics {
    responses: [IntCounter; 6],
    haproxy_responses: [IntCounter; 6],
    pub latency: Histogram,
}

impl PoolMetrics {
    pub fn response(&self, status: u16) {
        let i = class_index(status);
        self.responses[i].inc();
        self.haproxy_responses[i].inc();
    }
}

impl ServerMetrics {
    pub fn response(&self, status: u16) {
        let i = class_index(status);
        self.responses[i].inc();
        self.haproxy_responses[i].inc();
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    registry
        .register(Box::new(h.clone()))
        .expect("metric names are unique");
    h
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        Metrics {
            requests: counter(
                &r,
                "ess_router_requests_total",
                "Requests answered, by frontend, backend and status class.",
                &["backend", "code"],
            ),
            haproxy_backend_responses: counter(
                &r,
                "haproxy_backend_http_responses_total",
                "HAProxy-compatible: responses by backend and status class.",
                &["proxy", "code"],
            ),
            server_responses: counter(
                &r,
                "ess_router_server_responses_total",
                "Responses from each Synapse server, by status class.",
                &["backend", "server", "code"],
            ),
            haproxy_server_responses: counter(
                &r,
                "haproxy_server_http_responses_total",
                "HAProxy-compatible: responses by server and status class.",
                &["proxy", "server", "code"],
            ),
            upstream_latency: histogram(
                &r,
                "ess_router_upstream_response_seconds",
                "Time from choosing a server to its response headers.",
                &["backend", "server"],
            ),
            queue_time: histogram(
                &r,
                "ess_router_queue_seconds",
                "Time requests waited for a place on a server.",
                &["backend"],
            ),
            refused: counter(
                &r,
                "ess_router_unavailable_total",
                "Requests answered 429 because Synapse could not take them, by reason.",
                &["backend", "reason"],
            ),
            health_flips: counter(
                &r,
                "ess_router_health_transitions_total",
                "Health state changes of servers.",
                &["backend", "server", "to"],
            ),
            reloads: counter(
                &r,
                "ess_router_reloads_total",
                "Configuration reloads, by result.",
                &["result"],
            ),
            discovery: counter(
                &r,
                "ess_router_discovery_lookups_total",
                "DNS lookups of pool servers, by result.",
                &["pool", "result"],
            ),
            in_flight: gauge(
                &r,
                "ess_router_in_flight_requests",
                "Requests at each server right now.",
                &["backend", "server"],
            ),
            haproxy_server_sessions: gauge(
                &r,
                "haproxy_server_current_sessions",
                "HAProxy-compatible: requests at each server right now.",
                &["proxy", "server"],
            ),
            queue_length: gauge(
                &r,
                "ess_router_queue_length",
                "Requests waiting for a place, by backend.",
                &["backend"],
            ),
            haproxy_backend_queue: gauge(
                &r,
                "haproxy_backend_current_queue",
                "HAProxy-compatible: requests waiting, by backend.",
                &["proxy"],
            ),
            server_up: gauge(
                &r,
                "ess_router_server_up",
                "1 when a server passes its health checks.",
                &["backend", "server", "address"],
            ),
            haproxy_backend_active_servers: gauge(
                &r,
                "haproxy_backend_active_servers",
                "HAProxy-compatible: live servers by backend.",
                &["proxy"],
            ),
            registry: r,
        }
    }

    pub fn pool(&self, backend: &str) -> PoolMetrics {
        PoolMetrics {
            responses: CLASSES.map(|c| self.requests.with_label_values(&[backend, c])),
            haproxy_responses: CLASSES.map(|c| {
                self.haproxy_backend_responses
                    .with_label_values(&[backend, c])
            }),
            queue_time: self.queue_time.with_label_values(&[backend]),
            refused_no_server: self.refused.with_label_values(&[backend, "no_live_server"]),
            refused_queue: self.refused.with_label_values(&[backend, "queue_timeout"]),
            refused_connect: self.refused.with_label_values(&[backend, "connect_failed"]),
        }
    }

    pub fn server(&self, backend: &str, server: &str) -> ServerMetrics {
        ServerMetrics {
            responses: CLASSES.map(|c| {
                self.server_responses
                    .with_label_values(&[backend, server, c])
            }),
            haproxy_responses: CLASSES.map(|c| {
                self.haproxy_server_responses
                    .with_label_values(&[backend, server, c])
            }),
            latency: self.upstream_latency.with_label_values(&[backend, server]),
        }
    }

    /// Counters for answers a frontend makes by itself, by status class.
    pub fn frontend(&self, frontend: &str) -> [IntCounter; 6] {
        CLASSES.map(|c| self.requests.with_label_values(&[frontend, c]))
    }

    pub fn health_flip(&self, backend: &str, server: &str, up: bool) {
        let to = if up { "up" } else { "down" };
        self.health_flips
            .with_label_values(&[backend, server, to])
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).inc();
    }

    pub fn discovery(&self, name: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.discovery.with_label_values(&[name, result]).inc();
    }

    /// The text exposition, with the state gauges read from `router` now.
    pub fn render(&self, router: &Router) -> Vec<u8> {
        for g in [
            &self.in_flight,
            &self.haproxy_server_sessions,
            &self.queue_length,
            &self.haproxy_backend_queue,
            &self.server_up,
            &self.haproxy_backend_active_servers,
        ] {
            g.reset();
        }
        for pool in router.pools.iter().chain([&router.main_failover]) {
            let backend = pool.backend.as_str();
            let waiting = pool.waiting() as i64;
            self.queue_length.with_label_values(&[backend]).set(waiting);
            self.haproxy_backend_queue
                .with_label_values(&[backend])
                .set(waiting);
            let mut live = 0;
            for member in pool.members() {
                let up = member.upstream.is_up();
                live += i64::from(up);
                let name = member.upstream.name.as_str();
                let in_flight = member.in_flight() as i64;
                self.in_flight
                    .with_label_values(&[backend, name])
                    .set(in_flight);
                self.haproxy_server_sessions
                    .with_label_values(&[backend, name])
                    .set(in_flight);
                self.server_up
                    .with_label_values(&[backend, name, &member.upstream.addr.to_string()])
                    .set(i64::from(up));
            }
            self.haproxy_backend_active_servers
                .with_label_values(&[backend])
                .set(live);
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
