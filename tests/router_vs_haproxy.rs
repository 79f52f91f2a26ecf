//! The same requests through the chart's HAProxy 2.6 and through ess-router, both built
//! from one configuration file: the same status, the same pool, the same headers sent to
//! Synapse and back to the client, the same generated bodies.

use std::net::SocketAddr;

use ess_suite::free_port;
use ess_suite::haproxy::Haproxy;
use ess_suite::http::{request, Response};
use ess_suite::processes::{pool_yaml, Ports, RouterProcess, Standin};

const POOLS: [&str; 7] = [
    "main",
    "client-reader",
    "event-creator",
    "federation-reader",
    "initial-synchrotron",
    "media-repository",
    "synchrotron",
];

const EXTRA: &str = r#"access:
  trusted_proxies: [127.0.0.1/32]
  admin_allow: [192.0.2.0/24]
well_known:
  server:
    inline: '{"m.server": "matrix.example.com:443"}'
  client:
    inline: '{"m.homeserver": {"base_url": "https://matrix.example.com"}}'
  redirect: https://chat.example.com/
"#;

/// Headers compared on the answer the client gets.
const RESPONSE_HEADERS: [&str; 11] = [
    "content-type",
    "content-encoding",
    "location",
    "strict-transport-security",
    "permissions-policy",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "x-frame-options",
    "cache-control",
];

/// Headers compared on what Synapse received.
const FORWARDED_HEADERS: [&str; 5] = [
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-access-token",
    "forwarded",
    "authorization",
];

/// What a client and Synapse would notice of one answer.
fn observe(r: &Response) -> Vec<String> {
    let mut seen = vec![format!("status {}", r.status)];
    for name in RESPONSE_HEADERS {
        if let Some(value) = r.header(name) {
            seen.push(format!("{name}: {value}"));
        }
    }
    let identity = r.status == 200
        && r.header("content-type") == Some("application/json")
        && serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|j| j["server"].is_string());
    if identity {
        let j = r.json();
        seen.push(format!("served by {}", j["server"]));
        for name in FORWARDED_HEADERS {
            seen.push(format!("sent {name}: {}", j["headers"][name]));
        }
    } else if r.header("content-encoding").is_some() {
        // Two gzip encoders write different bytes for the same text.
        seen.push("body compressed".into());
    } else {
        seen.push(format!("body {}", r.text()));
    }
    seen
}

type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const SYNAPSE_CASES: &[Case] = &[
    ("GET", "/_matrix/client/versions", &[]),
    ("GET", "/_matrix/client/v3/nothing", &[]),
    ("GET", "/_matrix/client/v3/sync", &[]),
    (
        "GET",
        "/_matrix/client/v3/sync?since=s1",
        &[("Authorization", "Bearer tok")],
    ),
    (
        "GET",
        "/_matrix/client/v3/sync?since=s1&full_state=true",
        &[],
    ),
    ("GET", "/_matrix/client/v3/events?from=x", &[]),
    (
        "PUT",
        "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1",
        &[],
    ),
    ("POST", "/_matrix/client/v3/createRoom?access_token=q", &[]),
    (
        "GET",
        "/_matrix/federation/v1/state_ids/!r:x?event_id=$e",
        &[],
    ),
    ("GET", "/_matrix/media/v3/download/x/y", &[]),
    (
        "GET",
        "/_synapse/admin/v2/users/@a:x",
        &[("X-Forwarded-For", "192.0.2.7")],
    ),
    (
        "PUT",
        "/_synapse/admin/v2/users/@a:x",
        &[("X-Forwarded-For", "192.0.2.7")],
    ),
    ("GET", "/_synapse/admin/v1/users", &[]),
    (
        "GET",
        "/_synapse/admin/v1/users",
        &[("X-Forwarded-For", "203.0.113.1, 192.0.2.7")],
    ),
    ("OPTIONS", "/_matrix/client/v3/sync", &[]),
    (
        "OPTIONS",
        "/_matrix/client/unstable/org.matrix.msc4108/rendezvous/x",
        &[],
    ),
    ("GET", "/_synapse/ess/version", &[]),
    (
        "GET",
        "/_matrix/client/v3/x",
        &[("X-Forwarded-Proto", "http"), ("X-Access-Token", "forged")],
    ),
    (
        "GET",
        "/_matrix/client/v3/x",
        &[("Accept-Encoding", "gzip")],
    ),
    (
        "GET",
        "/_matrix/client/v3/x",
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Standin-Content-Type", "image/png"),
        ],
    ),
    (
        "GET",
        "/_matrix/client/v3/x",
        &[("X-Standin-Status", "404")],
    ),
];

const WELL_KNOWN_CASES: &[Case] = &[
    ("GET", "/.well-known/matrix/server", &[]),
    ("GET", "/.well-known/matrix/client", &[]),
    ("POST", "/.well-known/matrix/server", &[]),
    ("GET", "/anything", &[]),
];

fn compare(at: (SocketAddr, SocketAddr), cases: &[Case]) -> Vec<String> {
    let mut differences = Vec::new();
    for (method, path, headers) in cases {
        let chart = observe(&request(at.0, method, path, headers));
        let ours = observe(&request(at.1, method, path, headers));
        if chart != ours {
            differences.push(format!(
                "{method} {path} {headers:?}\n  haproxy: {chart:?}\n  router:  {ours:?}"
            ));
        }
    }
    differences
}

#[test]
fn router_and_haproxy_answer_alike() {
    let hp = free_port();
    let servers: Vec<Standin> = POOLS
        .iter()
        .enumerate()
        .map(|(i, name)| Standin::start(name, &format!("127.0.60.{}", i + 2), hp))
        .collect();
    let mut yaml = format!("{EXTRA}synapse:\n  mas: true\n  pools:\n");
    for (name, server) in POOLS.iter().zip(&servers) {
        yaml.push_str(&pool_yaml(name, &[server], ""));
    }
    let haproxy = Haproxy::start(&yaml);
    haproxy.wait_ready();
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let pair = |f: fn(&Ports) -> SocketAddr| (f(&haproxy.ports), f(&router.ports));

    let mut differences = compare(pair(|p| p.synapse), SYNAPSE_CASES);
    differences.extend(compare(pair(|p| p.well_known), WELL_KNOWN_CASES));
    differences.extend(compare(pair(|p| p.blackhole), &[("GET", "/", &[])]));
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
