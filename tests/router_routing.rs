//! Port 8008: which pool answers, and what Synapse receives and the client gets back.

use ess_suite::free_port;
use ess_suite::http::{get, request};
use ess_suite::processes::{pool_yaml, RouterProcess, Standin};

struct Stack {
    router: RouterProcess,
    _servers: Vec<Standin>,
}

/// main, client-reader, synchrotron, initial-synchrotron, federation-reader: one stand-in
/// each on its own loopback address.
fn stack(net: u8, extra: &str) -> Stack {
    let hp = free_port();
    let names = [
        "main",
        "client-reader",
        "synchrotron",
        "initial-synchrotron",
        "federation-reader",
    ];
    let servers: Vec<Standin> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Standin::start(n, &format!("127.0.{net}.{}", i + 2), hp))
        .collect();
    let mut yaml = format!("{extra}synapse:\n  mas: true\n  pools:\n");
    for (name, s) in names.iter().zip(&servers) {
        yaml.push_str(&pool_yaml(name, &[s], ""));
    }
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    Stack {
        router,
        _servers: servers,
    }
}

fn server_of(r: &ess_suite::http::Response) -> String {
    r.json()["server"].as_str().unwrap_or("?").to_string()
}

#[test]
fn paths_reach_their_worker_pool_and_unknown_paths_reach_main() {
    let s = stack(10, "");
    let at = s.router.ports.synapse;
    let cases = [
        ("GET", "/_matrix/client/versions", "client-reader"),
        ("GET", "/_matrix/client/v3/sync?since=s1", "synchrotron"),
        (
            "GET",
            "/_matrix/federation/v1/state_ids/!r:x?event_id=$e",
            "federation-reader",
        ),
        ("GET", "/_matrix/client/v3/nothing/here", "main"),
        // Case-sensitive, like HAProxy's map_reg.
        ("GET", "/_matrix/client/VERSIONS", "main"),
        // The GET-only list: only GET and HEAD reach client-reader for this path.
        ("GET", "/_synapse/admin/v2/users/@a:x", "client-reader"),
        ("PUT", "/_synapse/admin/v2/users/@a:x", "main"),
    ];
    for (method, path, want) in cases {
        let r = request(at, method, path, &[]);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        assert_eq!(server_of(&r), want, "{method} {path}");
    }
}

#[test]
fn initial_syncs_go_to_the_initial_synchrotron() {
    let s = stack(11, "");
    let at = s.router.ports.synapse;
    let cases = [
        ("/_matrix/client/v3/sync", "initial-synchrotron"),
        ("/_matrix/client/v3/sync?since=s1", "synchrotron"),
        (
            "/_matrix/client/v3/sync?since=s1&full_state=true",
            "initial-synchrotron",
        ),
        ("/_matrix/client/r0/initialSync", "initial-synchrotron"),
        (
            "/_matrix/client/v3/rooms/!r:x/initialSync",
            "initial-synchrotron",
        ),
        ("/_matrix/client/v3/events?from=x", "synchrotron"),
        ("/_matrix/client/v3/events", "initial-synchrotron"),
    ];
    for (path, want) in cases {
        assert_eq!(server_of(&get(at, path)), want, "{path}");
    }
}

#[test]
fn forwarding_headers_are_set_as_the_chart_does() {
    let s = stack(12, "");
    let at = s.router.ports.synapse;

    let r = request(
        at,
        "GET",
        "/_matrix/client/v3/x?access_token=fromquery",
        &[("X-Access-Token", "forged")],
    );
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        h["x-access-token"], "fromquery",
        "a client's own X-Access-Token is overwritten"
    );
    assert_eq!(h["forwarded"], "proto=http;for=127.0.0.1");

    let r = request(
        at,
        "GET",
        "/_matrix/client/v3/x?access_token=fromquery",
        &[
            ("Authorization", "bearer fromheader"),
            ("X-Forwarded-For", "203.0.113.5"),
            ("X-Forwarded-Proto", "http"),
            ("Forwarded", "for=203.0.113.5"),
        ],
    );
    let h = &r.json()["headers"];
    assert_eq!(h["x-access-token"], "fromheader");
    assert_eq!(h["x-forwarded-for"], "203.0.113.5", "never appended to");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["forwarded"],
        serde_json::json!(["for=203.0.113.5", "proto=http;for=127.0.0.1"])
    );
    assert!(
        r.header("strict-transport-security").is_none(),
        "no HSTS for plain http"
    );

    let r = get(at, "/_matrix/client/v3/x");
    assert_eq!(
        r.json()["headers"]["x-access-token"],
        "",
        "empty without a token"
    );
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(r.header("permissions-policy"), Some("interest-cohort=()"));
}

#[test]
fn synapse_json_is_gzipped_for_clients_that_accept_it() {
    let s = stack(13, "");
    let at = s.router.ports.synapse;
    let r = request(
        at,
        "GET",
        "/_matrix/client/v3/x",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = request(
        at,
        "GET",
        "/_matrix/client/v3/x",
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Standin-Content-Type", "image/png"),
        ],
    );
    assert_eq!(
        r.header("content-encoding"),
        None,
        "only the five text types"
    );
    let r = request(
        at,
        "GET",
        "/_matrix/client/v3/x",
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Standin-Content-Encoding", "br"),
        ],
    );
    assert_eq!(
        r.header("content-encoding"),
        Some("br"),
        "already encoded: left alone"
    );
    let r = get(at, "/_matrix/client/v3/x");
    assert_eq!(r.header("content-encoding"), None);
    // Generated answers are not compressed.
    let r = request(
        at,
        "GET",
        "/_synapse/ess/version",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn options_preflight_is_answered_without_synapse() {
    let s = stack(14, "");
    let at = s.router.ports.synapse;
    let r = request(at, "OPTIONS", "/_matrix/client/v3/sync", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Origin, X-Requested-With, Content-Type, Accept, Authorization, Date")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("Synapse-Trace-Id, Server")
    );
    assert!(
        r.header("permissions-policy").is_none(),
        "generated answers get no Synapse headers"
    );

    let r = request(
        at,
        "OPTIONS",
        "/_matrix/client/unstable/org.matrix.msc4108/rendezvous/abc",
        &[],
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Origin, Content-Type, Accept, Content-Type, If-Match, If-None-Match")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("Synapse-Trace-Id, Server, ETag")
    );
    assert!(!s.router.access_log().contains("synapse-main/main"));
}

#[test]
fn ess_version_is_served_with_security_headers() {
    let s = stack(15, "");
    let r = get(s.router.ports.synapse, "/_synapse/ess/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["edition"], "community");
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn every_request_gets_one_access_log_line_naming_pool_and_server() {
    let s = stack(16, "");
    let at = s.router.ports.synapse;
    request(
        at,
        "GET",
        "/_matrix/client/v3/nothing",
        &[
            ("User-Agent", "probe/1"),
            ("X-Forwarded-For", "198.51.100.1"),
        ],
    );
    get(at, "/_matrix/federation/v1/state_ids/!r:x");
    let log = s
        .router
        .wait_for_log("GET /_matrix/federation/v1/state_ids/!r:x", 1);
    let main_line = log
        .lines()
        .find(|l| l.contains("/_matrix/client/v3/nothing"))
        .unwrap_or_else(|| panic!("no line for the main request:\n{log}"));
    assert!(
        main_line.contains(" synapse-http-in synapse-main/main1 "),
        "{main_line}"
    );
    assert!(main_line.contains(" 200 "), "{main_line}");
    assert!(
        main_line.contains("{localhost|198.51.100.1|probe/1}"),
        "{main_line}"
    );
    assert!(
        log.contains(" synapse-http-in synapse-federation-reader/federation-reader1 "),
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("/_matrix/client/v3/nothing"))
            .count(),
        1
    );
}

#[test]
fn json_access_log_has_one_object_per_request() {
    let s = stack(17, "access_log: json\n");
    let at = s.router.ports.synapse;
    request(
        at,
        "GET",
        "/_matrix/client/v3/nothing",
        &[("User-Agent", "probe/2")],
    );
    let log = s.router.wait_for_log("/_matrix/client/v3/nothing", 1);
    let line = log
        .lines()
        .find(|l| l.contains("/_matrix/client/v3/nothing"))
        .unwrap_or_default();
    let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(entry["frontend"], "synapse-http-in");
    assert_eq!(entry["backend"], "synapse-main");
    assert_eq!(entry["server"], "main1");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["user_agent"], "probe/2");
    assert!(entry["client"]
        .as_str()
        .is_some_and(|c| c.starts_with("127.0.0.1:")));
}
