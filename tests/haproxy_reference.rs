//! The HAProxy reference that `ess-haproxy-config` renders from a router configuration:
//! HAProxy 2.6 accepts it, and it routes and answers like the chart's HAProxy. These are the
//! chart's side of the comparisons the router's tests and the load benchmark make.

use std::path::Path;
use std::process::Command;

use ess_suite::free_port;
use ess_suite::haproxy::{render, Haproxy, HAPROXY};
use ess_suite::http::{get, request, try_request, Response};
use ess_suite::processes::{pool_yaml, Standin};

/// One stand-in per pool, on 127.0.`net`.x, sharing one health port.
fn stack(net: u8, names: &[&str], extra: &str) -> (Haproxy, Vec<Standin>) {
    let health_port = free_port();
    let servers: Vec<Standin> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Standin::start(name, &format!("127.0.{net}.{}", i + 2), health_port))
        .collect();
    let mut yaml = format!("{extra}synapse:\n  pools:\n");
    for (name, server) in names.iter().zip(&servers) {
        yaml.push_str(&pool_yaml(name, &[server], ""));
    }
    let haproxy = Haproxy::start(&yaml);
    haproxy.wait_ready();
    (haproxy, servers)
}

fn server_of(response: &Response) -> String {
    response.json()["server"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[test]
fn haproxy_accepts_the_configuration_rendered_from_the_example() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/router.example.yaml");
    let rendered = render(&example, dir.path());

    // The example names servers by DNS names that do not resolve here: warnings, no errors.
    let check = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&rendered)
        .output()
        .expect("run haproxy -c (apt-get install haproxy)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn paths_reach_their_pool_first_match_first_and_unknown_paths_reach_main() {
    let pools = [
        "main",
        "account-data",
        "client-reader",
        "federation-reader",
        "push-rules",
    ];
    let (haproxy, _servers) = stack(201, &pools, "");
    let at = haproxy.ports.synapse;

    let cases = [
        // account-data's `.*/tags` is the first regex of the table.
        (
            "GET",
            "/_matrix/client/v3/user/@a:x/rooms/!r:x/tags",
            "account-data",
        ),
        (
            "GET",
            "/_matrix/federation/v1/state_ids/!room:x?event_id=$e",
            "federation-reader",
        ),
        ("GET", "/_matrix/client/v3/pushrules/global/", "push-rules"),
        ("GET", "/_matrix/client/v3/rooms/!r:x/upgrade", "main"),
        ("GET", "/_matrix/client/VERSIONS", "main"),
        ("GET", "/_synapse/admin/v2/users/@a:x", "client-reader"),
        ("HEAD", "/_synapse/admin/v2/users/@a:x", "client-reader"),
        ("PUT", "/_synapse/admin/v2/users/@a:x", "main"),
    ];
    for (method, path, want) in cases {
        let response = request(at, method, path, &[]);
        assert_eq!(response.status, 200, "{method} {path}");
        if method != "HEAD" {
            assert_eq!(server_of(&response), want, "{method} {path}");
        }
    }
    let log = haproxy.log();
    assert!(
        log.contains(" synapse-http-in synapse-main/main1 "),
        "{log}"
    );
    assert!(
        log.contains(" synapse-http-in synapse-account-data/account-data1 "),
        "{log}"
    );
}

#[test]
fn blackhole_port_answers_every_request_403_blocked() {
    let (haproxy, _servers) = stack(202, &["main"], "");

    let response = request(
        haproxy.ports.blackhole,
        "POST",
        "/_matrix/client/v3/login",
        &[],
    );

    assert_eq!(response.status, 403);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.text(),
        r#"{"errcode": "M_FORBIDDEN", "error": "Blocked"}"#
    );
}

#[test]
fn access_token_header_is_always_overwritten() {
    let (haproxy, _servers) = stack(203, &["main"], "");
    let at = haproxy.ports.synapse;

    let forged = [
        ("X-Access-Token", "forged"),
        ("Authorization", "Bearer fromheader"),
    ];
    let response = request(
        at,
        "GET",
        "/_matrix/client/v3/x?access_token=fromquery",
        &forged,
    );
    assert_eq!(response.json()["headers"]["x-access-token"], "fromheader");

    let response = request(
        at,
        "GET",
        "/_matrix/client/v3/x",
        &[("X-Access-Token", "forged")],
    );
    assert_eq!(response.json()["headers"]["x-access-token"], "");
}

#[test]
fn pool_without_live_server_falls_back_to_main_unless_its_type_cannot() {
    let pools = ["main", "client-reader", "media-repository"];
    let (haproxy, servers) = stack(204, &pools, "");
    let at = haproxy.ports.synapse;
    assert_eq!(
        server_of(&get(at, "/_matrix/client/versions")),
        "client-reader"
    );

    servers[1].set_healthy(false);
    servers[2].set_healthy(false);
    haproxy.wait_until("client-reader fell back to main", || {
        server_of(&get(at, "/_matrix/client/versions")) == "main"
    });
    haproxy.wait_until("media-repository is down", || {
        get(at, "/_matrix/media/v3/config").status != 200
    });

    let response = get(at, "/_matrix/media/v3/config");
    assert_eq!(response.status, 429);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        response.text(),
        r#"{"errcode":"M_UNKNOWN","error":"Server is unavailable"}"#
    );
    let ready = try_request(haproxy.ports.startup, "GET", "/synapse_ready", &[], b"");
    assert_eq!(
        ready.map(|r| r.status).ok(),
        Some(503),
        "media-repository is required"
    );
}
