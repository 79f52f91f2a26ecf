//! What happens when Synapse cannot take a request: fail-over to main, the waiting queue,
//! the chart's 429, timeouts and connect retries.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use ess_suite::http::{get, request, slow_requests, Response};
use ess_suite::processes::{free_port_on, pool_yaml, RouterProcess, Standin};
use ess_suite::{free_port, wait_until};

const UNAVAILABLE: &str = r#"{"errcode":"M_UNKNOWN","error":"Server is unavailable"}"#;

fn assert_unavailable(r: &Response) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.text(), UNAVAILABLE);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, PUT, DELETE, OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Origin, X-Requested-With, Content-Type, Accept, Authorization")
    );
}

#[test]
fn a_pool_without_live_servers_falls_back_to_main() {
    let hp = free_port();
    let main = Standin::start("main", "127.0.40.2", hp);
    let reader = Standin::start("reader", "127.0.40.3", hp);
    let media = Standin::start("media", "127.0.40.4", hp);
    let yaml = format!(
        "synapse:\n  pools:\n{}{}{}",
        pool_yaml("main", &[&main], ""),
        pool_yaml("federation-reader", &[&reader], ""),
        pool_yaml("media-repository", &[&media], ""),
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let at = router.ports.synapse;
    let fed = "/_matrix/federation/v1/state_ids/!r:x";
    assert_eq!(get(at, fed).json()["server"], "reader");

    reader.set_healthy(false);
    wait_until("traffic moved", || get(at, fed).json()["server"] == "main");
    router.wait_for_log(" synapse-main-failover/main1 ", 1);
    assert_eq!(
        ess_suite::http::try_request(router.ports.startup, "GET", "/synapse_ready", &[], b"")
            .map(|r| r.status)
            .unwrap_or(0),
        200,
        "a pool that can fall back does not make the router unready"
    );

    reader.set_healthy(true);
    wait_until("traffic moved", || {
        get(at, fed).json()["server"] == "reader"
    });

    // media-repository never falls back: its requests are refused and readiness drops.
    media.set_healthy(false);
    router.wait_ready(503);
    assert_unavailable(&get(at, "/_matrix/media/v3/download/x/y"));
    media.set_healthy(true);
    router.wait_ready(200);
}

#[test]
fn main_down_means_429_with_the_charts_body() {
    let main = Standin::start("main", "127.0.41.2", free_port());
    let router = RouterProcess::start(&format!(
        "synapse:\n  pools:\n{}",
        pool_yaml("main", &[&main], "")
    ));
    router.wait_ready(200);
    main.set_healthy(false);
    router.wait_ready(503);
    assert_unavailable(&get(router.ports.synapse, "/_matrix/client/v3/x"));
    let log = router.wait_for_log(" 429 ", 1);
    assert!(log.contains(" synapse-main/<NOSRV> "), "{log}");
}

#[test]
fn maxconn_queues_requests_and_a_full_queue_answers_429() {
    let main = Standin::start("main", "127.0.42.2", free_port());
    let extra = "      maxconn: 2\n      queue_timeout: 3s\n";
    let router = RouterProcess::start(&format!(
        "synapse:\n  pools:\n{}",
        pool_yaml("main", &[&main], extra)
    ));
    router.wait_ready(200);
    let at = router.ports.synapse;

    // Eight slow requests at once through two places: all served, never more than two at
    // Synapse at a time.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                request(
                    at,
                    "GET",
                    "/_matrix/client/v3/x",
                    &[("X-Standin-Delay-Ms", "300")],
                )
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread").status, 200);
    }
    assert_eq!(main.stats()["max_in_flight"], 2);

    // Now hold both places longer than the queue timeout: the third request waits, then 429.
    let holders = slow_requests(at, "/_matrix/client/v3/x", 2, 5000);
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = get(at, "/_matrix/client/v3/x");
    let waited = started.elapsed();
    assert_unavailable(&r);
    assert!(
        waited >= Duration::from_millis(2500),
        "answered after {waited:?}, before the queue timeout"
    );
    for h in holders {
        assert_eq!(h.join().expect("thread").status, 200);
    }
    let log = router.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains(" 429 ") && l.contains(" sQ-- ")),
        "{log}"
    );
}

#[test]
fn a_slow_synapse_is_504_not_429() {
    let main = Standin::start("main", "127.0.43.2", free_port());
    let router = RouterProcess::start(&format!(
        "synapse:\n  pools:\n{}",
        pool_yaml("main", &[&main], "      server_timeout: 500ms\n")
    ));
    router.wait_ready(200);
    let r = request(
        router.ports.synapse,
        "GET",
        "/_matrix/client/v3/x",
        &[("X-Standin-Delay-Ms", "3000")],
    );
    assert_eq!(r.status, 504);
}

#[test]
fn connect_failures_are_retried_then_sent_to_another_server() {
    let main = Standin::start("main", "127.0.44.2", free_port());
    // Nothing listens here, and without health checks the router cannot know.
    let dead = format!("127.0.44.3:{}", free_port_on("127.0.44.3"));
    let yaml = format!(
        "synapse:\n  pools:\n{}    push-rules:\n      servers: [\"{dead}\", \"{}\"]\n      health_check: false\n",
        pool_yaml("main", &[&main], ""),
        main.addr
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    for _ in 0..4 {
        let r = get(router.ports.synapse, "/_matrix/client/v3/pushrules/");
        assert_eq!(
            r.status,
            200,
            "redispatched to the live server: {}",
            r.text()
        );
    }
    // Round robin moves a retry to the next server at once; the log counts the retry.
    let log = router.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("synapse-push-rules/push-rules2") && l.contains(" 1 {")),
        "{log}"
    );
    assert!(
        !log.contains("push-rules1 "),
        "nothing was answered by the dead server: {log}"
    );
}

#[test]
fn connect_failures_with_nowhere_else_to_go_are_429() {
    let main = Standin::start("main", "127.0.45.2", free_port());
    let dead = format!("127.0.45.3:{}", free_port_on("127.0.45.3"));
    let yaml = format!(
        "synapse:\n  pools:\n{}    push-rules:\n      servers: [\"{dead}\"]\n      health_check: false\n",
        pool_yaml("main", &[&main], "")
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    assert_unavailable(&get(router.ports.synapse, "/_matrix/client/v3/pushrules/"));
    let log = router.wait_for_log(" 429 ", 1);
    assert!(
        log.contains(" sC-- 3 {"),
        "three retries before giving up: {log}"
    );
}

#[test]
fn hashed_pools_keep_a_key_on_one_server_and_spread_keys() {
    let hp = free_port();
    let main = Standin::start("main", "127.0.46.2", hp);
    let readers: Vec<Standin> = (0..3)
        .map(|i| Standin::start(&format!("reader{i}"), &format!("127.0.46.{}", i + 3), hp))
        .collect();
    let syncs: Vec<Standin> = (0..3)
        .map(|i| Standin::start(&format!("sync{i}"), &format!("127.0.46.{}", i + 6), hp))
        .collect();
    let creators: Vec<Standin> = (0..3)
        .map(|i| Standin::start(&format!("creator{i}"), &format!("127.0.46.{}", i + 9), hp))
        .collect();
    let yaml = format!(
        "synapse:\n  pools:\n{}{}{}{}",
        pool_yaml("main", &[&main], ""),
        pool_yaml("federation-reader", &refs(&readers), ""),
        pool_yaml("synchrotron", &refs(&syncs), ""),
        pool_yaml("event-creator", &refs(&creators), ""),
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let at = router.ports.synapse;
    let server = |path: &str, headers: &[(&str, &str)]| -> String {
        request(at, "GET", path, headers).json()["server"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };

    // Whole URI, query included.
    let mut seen = HashSet::new();
    for i in 0..30 {
        let path = format!("/_matrix/federation/v1/state_ids/!r:x?event_id=$e{i}");
        let first = server(&path, &[]);
        assert_eq!(server(&path, &[]), first, "{path} moved");
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "URIs spread over the readers: {seen:?}");

    // Access token, from either place it can be.
    let mut seen = HashSet::new();
    for i in 0..30 {
        let token = format!("syt_token_{i}");
        let first = server(
            &format!("/_matrix/client/v3/sync?since=s&access_token={token}"),
            &[],
        );
        let bearer = format!("Bearer {token}");
        assert_eq!(
            server(
                "/_matrix/client/v3/sync?since=s",
                &[("Authorization", bearer.as_str())]
            ),
            first
        );
        seen.insert(first);
    }
    assert_eq!(
        seen.len(),
        3,
        "tokens spread over the synchrotrons: {seen:?}"
    );

    // Event creator: one room's events on one worker; createRoom spread by token (the
    // chart's bug sent every createRoom to one worker).
    let room = server("/_matrix/client/v3/rooms/!abc:x/send/m.room.message/1", &[]);
    assert_eq!(
        server("/_matrix/client/v3/rooms/!abc:x/state/m.room.name/", &[]),
        room
    );
    let mut seen = HashSet::new();
    for i in 0..30 {
        let bearer = format!("Bearer creator_{i}");
        seen.insert(server(
            "/_matrix/client/v3/createRoom",
            &[("Authorization", bearer.as_str())],
        ));
    }
    assert_eq!(seen.len(), 3, "createRoom spread by token: {seen:?}");
}

fn refs(v: &[Standin]) -> Vec<&Standin> {
    v.iter().collect()
}
