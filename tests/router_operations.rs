//! Running the router for months: reload without dropping a request, graceful stop and
//! upgrade, and metrics that agree with the traffic.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ess_suite::free_port;
use ess_suite::http::{get, request, slow_requests, try_request};
use ess_suite::processes::{pool_yaml, RouterProcess, SlowHealth, Standin};
use ess_suite::{wait_for_tcp, wait_until};

/// Requests in a loop from one thread until stopped or `max` sent, counting failures.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    handle: thread::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(at: std::net::SocketAddr, path: &'static str, max: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
        let handle = thread::spawn(move || {
            let mut servers = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed)
                && n.load(Ordering::Relaxed) < max
                && Instant::now() < deadline
            {
                n.fetch_add(1, Ordering::Relaxed);
                match try_request(at, "GET", path, &[], b"") {
                    Ok(r) if r.status == 200 => {
                        servers.push(r.json()["server"].as_str().unwrap_or("").to_string())
                    }
                    _ => {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            servers
        });
        Load {
            stop,
            sent,
            failed,
            handle,
        }
    }

    fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let servers = self.handle.join().expect("load thread");
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            servers,
        )
    }
}

#[test]
fn sighup_reload_swaps_the_configuration_without_a_failed_request() {
    let hp = free_port();
    let main = Standin::start("main", "127.0.50.2", hp);
    let a = Standin::start("reader-a", "127.0.50.3", hp);
    let b = Standin::start("reader-b", "127.0.50.4", hp);
    let config = |readers: &[&Standin]| {
        format!(
            "synapse:\n  pools:\n{}{}",
            pool_yaml("main", &[&main], ""),
            pool_yaml("federation-reader", readers, "")
        )
    };
    let router = RouterProcess::start(&config(&[&a]));
    router.wait_ready(200);
    let path = "/_matrix/federation/v1/state_ids/!r:x";
    let load = Load::start(router.ports.synapse, path, 20_000);
    thread::sleep(Duration::from_millis(300));

    // Move the pool from reader-a to reader-b and reload.
    let header = std::fs::read_to_string(&router.config).expect("config");
    let (listeners, _) = header.rsplit_once("\nsynapse:\n").expect("config layout");
    let listeners = format!("{listeners}\n");
    std::fs::write(&router.config, format!("{listeners}{}", config(&[&b])))
        .expect("rewrite config");
    router.process.signal("HUP");
    wait_until("traffic moved to reader-b", || {
        let served = get(router.ports.synapse, path).json()["server"] == "reader-b";
        assert!(!router.log().contains("reload refused"), "{}", router.log());
        served
    });
    thread::sleep(Duration::from_millis(300));

    // An invalid file changes nothing.
    std::fs::write(
        &router.config,
        format!("{listeners}synapse:\n  pools:\n    main: {{servers: [bogus]}}\n"),
    )
    .expect("rewrite");
    router.process.signal("HUP");
    wait_until("refusal logged", || router.log().contains("reload refused"));
    thread::sleep(Duration::from_millis(300));
    let (sent, failed, servers) = load.finish();
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during reloads"
    );
    assert!(sent > 50, "only {sent} requests sent");
    assert!(
        servers.iter().any(|s| s == "reader-a")
            && servers.last().map(String::as_str) == Some("reader-b")
    );
    assert_eq!(
        get(router.ports.synapse, path).json()["server"],
        "reader-b",
        "still on the last good config"
    );
    assert!(
        router.log().contains("synapse.pools.main.servers[0]"),
        "the refusal names the key: {}",
        router.log()
    );

    let metrics = get(router.ports.metrics, "/metrics").text();
    assert!(
        metrics.contains("ess_router_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ess_router_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn reload_keeps_the_health_state_of_servers_that_stay() {
    let main = Standin::start("main", "127.0.51.2", free_port());
    let router = RouterProcess::start(&format!(
        "synapse:\n  pools:\n    main:\n      servers: [\"{}\"]\n      health_check: {{port: {}, interval: 60s, timeout: 1s, fall: 1, rise: 1}}\n",
        main.addr,
        main.health.port()
    ));
    router.wait_ready(200);
    // With a 60 s interval, a reload that dropped the health state would leave main down
    // (new servers wait for their first check) until the next check.
    router.process.signal("HUP");
    wait_until("reload logged", || {
        router.log().contains("configuration reloaded")
    });
    assert_eq!(
        get(router.ports.synapse, "/_matrix/client/v3/x").status,
        200
    );
}

#[test]
fn watched_file_changes_are_picked_up() {
    let main = Standin::start("main", "127.0.52.2", free_port());
    let dir = tempfile::tempdir().expect("dir");
    let ports = ess_suite::processes::Ports::free();
    let body = |edition: &str| {
        format!(
            "listeners:\n  synapse: \"{}\"\nshutdown: {{grace_period: 0s, drain_timeout: 1s}}\nsynapse:\n  ess_version: {{inline: '{{\"edition\": \"{edition}\"}}'}}\n  pools:\n{}",
            ports.synapse,
            pool_yaml("main", &[&main], "")
        )
    };
    let config = dir.path().join("router.yaml");
    std::fs::write(&config, body("one")).expect("write");
    let _router = RouterProcess::spawn(&dir, &config, &["--watch-config"]);
    wait_for_tcp(ports.synapse, Duration::from_secs(20));
    assert_eq!(
        get(ports.synapse, "/_synapse/ess/version").json()["edition"],
        "one"
    );
    std::fs::write(&config, body("two")).expect("write");
    wait_until("the new document is served", || {
        get(ports.synapse, "/_synapse/ess/version").json()["edition"] == "two"
    });
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let main = Standin::start("main", "127.0.53.2", free_port());
    let router = RouterProcess::start(&format!(
        "synapse:\n  pools:\n{}",
        pool_yaml("main", &[&main], "")
    ));
    router.wait_ready(200);
    let at = router.ports.synapse;
    let slow = slow_requests(at, "/_matrix/client/v3/x", 4, 1500);
    thread::sleep(Duration::from_millis(300));
    router.process.signal("TERM");
    for h in slow {
        assert_eq!(
            h.join().expect("thread").status,
            200,
            "a request in flight was cut"
        );
    }
    let mut process = router.process;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = process.0.try_wait().expect("wait") {
            assert!(
                status.success() || status.code().is_none(),
                "exit: {status:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the router did not stop after SIGTERM"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_requests_answered_just_before_an_exit_are_logged() {
    let main = Standin::start("main", "127.0.53.3", free_port());
    let dir = tempfile::tempdir().expect("dir");
    let ports = ess_suite::processes::Ports::free();
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  synapse: \"{}\"\nshutdown: {{grace_period: 0s, drain_timeout: 1s}}\nsynapse:\n  pools:\n{}",
            ports.synapse,
            pool_yaml("main", &[&main], "")
        ),
    )
    .expect("write");
    let mut process = RouterProcess::spawn(&dir, &config, &[]);
    wait_for_tcp(ports.synapse, Duration::from_secs(20));
    wait_until("the pool is up", || {
        try_request(ports.synapse, "GET", "/_matrix/client/v3/warm", &[], b"")
            .is_ok_and(|r| r.status == 200)
    });
    for n in 0..20 {
        let path = format!("/_matrix/client/v3/last-{n}");
        assert_eq!(get(ports.synapse, &path).status, 200);
    }
    process.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    while process.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the router did not stop");
        thread::sleep(Duration::from_millis(5));
    }
    let log = std::fs::read_to_string(dir.path().join("stdout.log")).expect("log");
    for n in 0..20 {
        let request = format!("\"GET /_matrix/client/v3/last-{n} HTTP/1.1\"");
        assert!(
            log.lines()
                .any(|l| l.contains(&request) && l.contains(" 200 ")),
            "no line for {request}:\n{log}"
        );
    }
}

/// A pool of `server` whose health checks go to `health` and take as long as it makes them.
fn slowly_checked_pool(server: &Standin, health: &SlowHealth) -> String {
    format!(
        "synapse:\n  pools:\n    main:\n      servers: [\"{}\"]\n      health_check: {{port: {}, interval: 100ms, timeout: 5s, fall: 2, rise: 2}}\n",
        server.addr,
        health.addr.port()
    )
}

#[test]
fn a_started_router_serves_its_first_request_once_it_checked_the_servers() {
    // Every check takes 500 ms: a router that listened before its first check would answer
    // that long with 429.
    let health = SlowHealth::start("127.0.56.2", Duration::from_millis(500));
    let main = Standin::start("main", "127.0.56.2", free_port());
    let router = RouterProcess::start(&slowly_checked_pool(&main, &health));
    let r = get(router.ports.synapse, "/_matrix/client/v3/x");
    assert_eq!(
        r.status,
        200,
        "first answer: {}\n{}",
        r.text(),
        router.log()
    );
    assert_eq!(r.json()["server"], "main");
}

#[test]
fn graceful_upgrade_hands_the_sockets_over_without_refusing_a_connection() {
    // The new process checks the servers (500 ms) before it takes the sockets over; the
    // old one serves until then.
    let health = SlowHealth::start("127.0.54.2", Duration::from_millis(500));
    let main = Standin::start("main", "127.0.54.2", free_port());
    let router = RouterProcess::start(&slowly_checked_pool(&main, &health));
    router.wait_ready(200);
    let load = Load::start(router.ports.synapse, "/_matrix/client/v3/x", 20_000);
    thread::sleep(Duration::from_millis(300));

    // The new process waits for the old one's sockets; SIGQUIT makes the old one send them.
    let new = RouterProcess::spawn(&router.dir, &router.config, &["--upgrade"]);
    wait_until("the new process waits for the hand-over", || {
        router.dir.path().join("upgrade.sock").exists()
    });
    router.process.signal("QUIT");
    thread::sleep(Duration::from_millis(1500));
    let (sent, failed, _) = load.finish();
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the upgrade"
    );
    assert!(sent > 50, "only {sent} requests sent");

    let mut old = router.process;
    wait_until("the old process exits", || {
        old.0.try_wait().ok().flatten().is_some()
    });
    assert_eq!(
        get(router.ports.synapse, "/_matrix/client/v3/x").status,
        200,
        "served by the new process"
    );
    drop(new);
}

#[test]
fn metrics_count_what_was_served() {
    let hp = free_port();
    let main = Standin::start("main", "127.0.55.2", hp);
    let router = RouterProcess::start(&format!(
        "synapse:\n  pools:\n{}",
        pool_yaml("main", &[&main], "")
    ));
    router.wait_ready(200);
    let at = router.ports.synapse;
    for _ in 0..7 {
        assert_eq!(get(at, "/_matrix/client/v3/x").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            request(
                at,
                "GET",
                "/_matrix/client/v3/x",
                &[("X-Standin-Status", "404")]
            )
            .status,
            404
        );
    }
    main.set_healthy(false);
    router.wait_ready(503);
    for _ in 0..2 {
        assert_eq!(get(at, "/_matrix/client/v3/x").status, 429);
    }
    let m = get(router.ports.metrics, "/metrics").text();
    for line in [
        "ess_router_requests_total{backend=\"synapse-main\",code=\"2xx\"} 7",
        "ess_router_requests_total{backend=\"synapse-main\",code=\"4xx\"} 5",
        "haproxy_backend_http_responses_total{code=\"2xx\",proxy=\"synapse-main\"} 7",
        "ess_router_server_responses_total{backend=\"synapse-main\",code=\"4xx\",server=\"main1\"} 3",
        "ess_router_unavailable_total{backend=\"synapse-main\",reason=\"no_live_server\"} 2",
        "ess_router_server_up{address=\"127.0.55.2",
        "ess_router_health_transitions_total{backend=\"synapse-main\",server=\"main1\",to=\"down\"} 1",
        "haproxy_backend_active_servers{proxy=\"synapse-main\"} 0",
        "process_resident_memory_bytes",
        "ess_router_upstream_response_seconds_count{backend=\"synapse-main\",server=\"main1\"} 10",
    ] {
        assert!(m.contains(line), "missing {line} in:\n{m}");
    }
    assert!(
        !router.access_log().contains("/metrics"),
        "/metrics is not access-logged"
    );
}
