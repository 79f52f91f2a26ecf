//! The routing decision with the chart's full route table (every worker type enabled):
//! the router's one-pass `RegexSet` against the sequential first-match walk HAProxy's
//! `map_reg` does, on a path that matches the first pattern, one that matches a late one,
//! and one that matches none.
//!
//!     cargo bench --bench routing

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ess_router::config::Settings;
use ess_router::routes::RouteTable;
use regex::Regex;

const ALL_POOLS: &str = "synapse:\n  pools:\n    main: {servers: []}\n    account-data: {servers: []}\n    client-reader: {servers: []}\n    device-lists: {servers: []}\n    encryption: {servers: []}\n    event-creator: {servers: []}\n    federation-inbound: {servers: []}\n    federation-reader: {servers: []}\n    initial-synchrotron: {servers: []}\n    mas-helper: {servers: []}\n    media-repository: {servers: []}\n    presence-writer: {servers: []}\n    push-rules: {servers: []}\n    receipts: {servers: []}\n    sliding-sync: {servers: []}\n    sso-login: {servers: []}\n    synchrotron: {servers: []}\n    typing-persister: {servers: []}\n    user-dir: {servers: []}\n";

const PATHS: [(&str, &str); 3] = [
    ("first", "/_matrix/client/v3/user/@a:x/rooms/!r:x/tags"),
    ("late", "/_matrix/client/v3/rooms/!r:x/typing/@a:x"),
    ("none", "/_matrix/client/v3/rooms/!r:x/upgrade"),
];

/// HAProxy's way: every pattern in order until one matches.
struct Sequential(Vec<(Regex, usize)>);

impl Sequential {
    fn route(&self, path: &str) -> usize {
        self.0
            .iter()
            .find(|(re, _)| re.is_match(path))
            .map_or(0, |(_, pool)| *pool)
    }
}

fn routing(c: &mut Criterion) {
    let settings = Settings::parse(Path::new("bench.yaml"), ALL_POOLS).expect("config");
    let table = RouteTable::new(&settings.pools);
    let sequential = Sequential(
        settings
            .pools
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.paths.iter().map(move |r| (r.clone(), i)))
            .collect(),
    );
    assert!(sequential.0.len() > 100, "the full table");
    for (name, path) in PATHS {
        // Both must agree before they are timed.
        assert_eq!(table.route(false, path), sequential.route(path), "{path}");
        let mut group = c.benchmark_group(format!("route/{name}"));
        group.bench_function("ess-router", |b| {
            b.iter(|| table.route(false, black_box(path)))
        });
        group.bench_function("sequential", |b| {
            b.iter(|| sequential.route(black_box(path)))
        });
        group.finish();
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
