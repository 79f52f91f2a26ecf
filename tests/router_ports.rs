//! The ports that answer by themselves: blackhole (8009), well-known (8010), liveness
//! (8405) and readiness (8406).

use std::time::{Duration, Instant};

use ess_suite::free_port;
use ess_suite::http::{get, request};
use ess_suite::processes::{pool_yaml, RouterProcess, Standin};

fn router_with(net: u8, well_known: &str) -> (RouterProcess, Standin) {
    let main = Standin::start("main", &format!("127.0.{net}.2"), free_port());
    let yaml = format!(
        "synapse:\n  pools:\n{}{well_known}",
        pool_yaml("main", &[&main], "")
    );
    let router = RouterProcess::start(&yaml);
    (router, main)
}

#[test]
fn blackhole_refuses_everything_with_the_charts_body() {
    let (router, _main) = router_with(20, "");
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/_matrix/client/v3/login"),
        ("DELETE", "/x"),
    ] {
        let r = request(router.ports.blackhole, method, path, &[]);
        assert_eq!(r.status, 403);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.text(),
            r#"{"errcode": "M_FORBIDDEN", "error": "Blocked"}"#
        );
    }
    router.wait_for_log(" http-blackhole http-blackhole/<NOSRV> ", 3);
}

const WELL_KNOWN: &str = r#"well_known:
  server:
    inline: '{"m.server": "matrix.example.com:443"}'
  client:
    inline: '{"m.homeserver": {"base_url": "https://matrix.example.com"}}'
  headers:
    X-Robots-Tag: null
    X-Extra: added
  redirect: https://chat.example.com/
"#;

#[test]
fn well_known_documents_carry_the_charts_headers() {
    let (router, _main) = router_with(21, WELL_KNOWN);
    let at = router.ports.well_known;

    let r = get(at, "/.well-known/matrix/server");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["m.server"], "matrix.example.com:443");
    assert_eq!(r.header("content-type"), Some("application/json"));
    for (name, value) in [
        (
            "access-control-allow-headers",
            "X-Requested-With, Content-Type, Authorization",
        ),
        (
            "access-control-allow-methods",
            "GET, POST, PUT, DELETE, OPTIONS",
        ),
        ("access-control-allow-origin", "*"),
        ("cache-control", "public, max-age=3600"),
        ("content-security-policy", "frame-ancestors 'self'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("x-xss-protection", "1; mode=block"),
        ("x-extra", "added"),
    ] {
        assert_eq!(r.header(name), Some(value), "{name}");
    }
    assert_eq!(
        r.header("x-robots-tag"),
        None,
        "removed by the configuration"
    );

    let r = get(at, "/.well-known/matrix/client");
    assert_eq!(
        r.json()["m.homeserver"]["base_url"],
        "https://matrix.example.com"
    );
}

#[test]
fn well_known_refuses_writes_and_redirects_other_paths() {
    let (router, _main) = router_with(22, WELL_KNOWN);
    let at = router.ports.well_known;
    for method in ["DELETE", "POST", "PUT"] {
        let r = request(at, method, "/.well-known/matrix/server", &[]);
        assert_eq!(r.status, 405, "{method}");
        assert!(r.body.is_empty());
    }
    let r = get(at, "/some/page?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://chat.example.com/"),
        "path not kept"
    );
    // Exact paths only.
    assert_eq!(get(at, "/.well-known/matrix/server/").status, 301);
}

#[test]
fn well_known_without_redirect_answers_404() {
    let (router, _main) = router_with(23, "well_known:\n  server:\n    inline: '{}'\n");
    assert_eq!(get(router.ports.well_known, "/").status, 404);
    assert_eq!(
        get(router.ports.well_known, "/.well-known/matrix/server").status,
        200
    );
}

#[test]
fn liveness_and_readiness_follow_main() {
    let (router, main) = router_with(24, "");
    assert_eq!(get(router.ports.metrics, "/haproxy_test").status, 200);
    router.wait_ready(200);
    main.set_healthy(false);
    router.wait_ready(503);
    assert_eq!(
        get(router.ports.metrics, "/haproxy_test").status,
        200,
        "liveness is the router's own"
    );
    main.set_healthy(true);
    router.wait_ready(200);
    assert!(
        !router.access_log().contains("/synapse_ready"),
        "monitoring is not access-logged"
    );
    assert!(router.log().contains("server is down"), "{}", router.log());
}

#[test]
fn a_listener_address_in_use_stops_the_start_naming_it() {
    let main = Standin::start("main", "127.0.25.2", free_port());
    let taken = std::net::TcpListener::bind("127.0.25.9:0").expect("bind");
    let in_use = taken.local_addr().expect("address");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  synapse: \"127.0.25.9:{}\"\n  metrics: \"{in_use}\"\nsynapse:\n  pools:\n{}",
            ess_suite::processes::free_port_on("127.0.25.9"),
            pool_yaml("main", &[&main], "")
        ),
    )
    .expect("write config");

    let mut router = RouterProcess::spawn(&dir, &config, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = router.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the router still runs without its metrics listener"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).expect("log");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("listeners.metrics: cannot listen on {in_use}")),
        "{log}"
    );
}
