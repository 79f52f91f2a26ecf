//! Server discovery against a DNS server the test controls: pools given as `host:port` (A
//! records) or as an SRV name follow the answers while requests flow, keep the hash keys of
//! servers that stay, and keep the last answer through a DNS outage for `discovery.hold`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ess_suite::dns::{DnsServer, Srv};
use ess_suite::free_port;
use ess_suite::http::{get, try_request};
use ess_suite::processes::{free_port_on, pool_yaml, RouterProcess, Standin};

const FED: &str = "/_matrix/federation/v1/state_ids/!r:x";
const MEDIA: &str = "/_matrix/media/v3/download/x/y";

/// A stand-in on a chosen port: servers behind one A-record name share the spec's port.
fn standin_on(name: &str, ip: &str, port: u16, health_port: u16) -> Standin {
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    let health: SocketAddr = format!("{ip}:{health_port}").parse().expect("addr");
    Standin::start_at(name, addr, health)
}

/// A port free on every one of `ips`.
fn shared_port(ips: &[&str]) -> u16 {
    for _ in 0..50 {
        let port = free_port_on(ips[0]);
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

fn ip(standin: &Standin) -> IpAddr {
    standin.addr.ip()
}

fn discovery(dns: &DnsServer, hold: &str) -> String {
    format!(
        "discovery:\n  interval: 200ms\n  hold: {hold}\n  nameservers: [\"{}\"]\n",
        dns.addr
    )
}

/// A pool whose servers are `servers` (YAML list items), checked fast on `health_port`.
fn named_pool(name: &str, servers: &str, health_port: u16, extra: &str) -> String {
    format!(
        "    {name}:\n      servers: [{servers}]\n      health_check: {{port: {health_port}, interval: 100ms, timeout: 500ms, fall: 2, rise: 2}}\n{extra}"
    )
}

/// The stand-in that answered, or the status when none did.
fn served_by(at: SocketAddr, path: &str) -> String {
    let r = get(at, path);
    if r.status == 200 {
        r.json()["server"].as_str().unwrap_or_default().to_string()
    } else {
        format!("status {}", r.status)
    }
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Lines of the router's operational log that contain every one of `needles`.
fn log_lines(router: &RouterProcess, needles: &[&str]) -> Vec<String> {
    router
        .log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(String::from)
        .collect()
}

fn wait_for_log_line(router: &RouterProcess, needles: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while log_lines(router, needles).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {timeout:?}:\n{}",
            router.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn requests(standin: &Standin) -> u64 {
    standin.stats()["requests"].as_u64().expect("request count")
}

/// Requests sent one after another in the background, as a client would keep doing.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: JoinHandle<Report>,
}

#[derive(Debug, Default)]
struct Report {
    sent: usize,
    by_server: HashMap<String, usize>,
    failures: Vec<String>,
}

impl Traffic {
    /// At most 60 s or 50 000 requests, whichever comes first.
    fn start(at: SocketAddr, path: &'static str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (stopped, counter) = (stop.clone(), sent.clone());
        let thread = thread::spawn(move || {
            let mut report = Report::default();
            let until = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until && report.sent < 50_000
            {
                report.sent += 1;
                match try_request(at, "GET", path, &[], b"") {
                    Ok(r) if r.status == 200 => {
                        let server = r.json()["server"].as_str().unwrap_or_default().to_string();
                        *report.by_server.entry(server).or_default() += 1;
                    }
                    Ok(r) => report
                        .failures
                        .push(format!("status {}: {}", r.status, r.text())),
                    Err(e) => report.failures.push(e.to_string()),
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            report
        });
        Traffic { stop, sent, thread }
    }

    /// Wait until `n` more requests were answered.
    fn wait_for(&self, n: usize) {
        let target = self.sent.load(Ordering::Relaxed) + n;
        wait_until("traffic goes on", Duration::from_secs(20), || {
            self.sent.load(Ordering::Relaxed) >= target
        });
    }

    fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("traffic thread")
    }
}

#[test]
fn servers_join_and_leave_with_the_dns_answer_while_requests_flow() {
    let hp = free_port();
    let dns = DnsServer::start("127.0.70.1");
    let main = Standin::start("main", "127.0.70.2", hp);
    let port = shared_port(&["127.0.70.3", "127.0.70.4", "127.0.70.5"]);
    let fed1 = standin_on("fed1", "127.0.70.3", port, hp);
    let fed2 = standin_on("fed2", "127.0.70.4", port, hp);
    let fed3 = standin_on("fed3", "127.0.70.5", port, hp);
    dns.set_addresses("fed.test", &[ip(&fed1), ip(&fed2)]);
    let yaml = format!(
        "{}synapse:\n  pools:\n{}{}",
        discovery(&dns, "600s"),
        pool_yaml("main", &[&main], ""),
        named_pool(
            "federation-reader",
            &format!("\"fed.test:{port}\""),
            hp,
            "      balance: round-robin\n"
        ),
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let at = router.ports.synapse;
    wait_until("both A records serve", Duration::from_secs(10), || {
        let seen: Vec<String> = (0..6).map(|_| served_by(at, FED)).collect();
        seen.contains(&"fed1".into()) && seen.contains(&"fed2".into())
    });
    wait_for_log_line(
        &router,
        &[
            "server joined the pool",
            &format!("addr={}", fed1.addr),
            "from=fed.test:",
        ],
        Duration::from_secs(1),
    );

    let traffic = Traffic::start(at, FED);
    traffic.wait_for(50);

    // A third record whose server fails its health check: a member of the pool, but it only
    // takes requests once a check passes.
    fed3.set_healthy(false);
    dns.set_addresses("fed.test", &[ip(&fed1), ip(&fed2), ip(&fed3)]);
    wait_for_log_line(
        &router,
        &["server joined the pool", &format!("addr={}", fed3.addr)],
        Duration::from_secs(5),
    );
    thread::sleep(Duration::from_millis(600));
    assert_eq!(
        requests(&fed3),
        0,
        "a joined server waits for its first passing check"
    );
    fed3.set_healthy(true);
    wait_until("fed3 takes requests", Duration::from_secs(5), || {
        requests(&fed3) > 0
    });
    traffic.wait_for(50);

    // fed1's record goes: it leaves the pool and gets nothing more.
    dns.set_addresses("fed.test", &[ip(&fed2), ip(&fed3)]);
    wait_for_log_line(
        &router,
        &["server left the pool", &format!("addr={}", fed1.addr)],
        Duration::from_secs(5),
    );
    thread::sleep(Duration::from_millis(100)); // a request already on its way there finishes
    let fed1_before = requests(&fed1);
    traffic.wait_for(100);
    assert_eq!(
        requests(&fed1),
        fed1_before,
        "a server that left gets no requests"
    );

    let report = traffic.stop();
    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert!(report.sent >= 250, "{report:?}");
    for server in ["fed1", "fed2", "fed3"] {
        assert!(
            report.by_server.get(server).is_some_and(|&n| n > 0),
            "{server} took no requests: {report:?}"
        );
    }
    assert!(
        !report.by_server.contains_key("main"),
        "the pool always had a live server: {report:?}"
    );
}

#[test]
fn hashed_keys_of_servers_that_stay_do_not_move_when_a_server_joins_or_leaves() {
    let hp = free_port();
    let dns = DnsServer::start("127.0.71.1");
    let main = Standin::start("main", "127.0.71.2", hp);
    let port = shared_port(&["127.0.71.3", "127.0.71.4", "127.0.71.5"]);
    let fed1 = standin_on("fed1", "127.0.71.3", port, hp);
    let fed2 = standin_on("fed2", "127.0.71.4", port, hp);
    let fed3 = standin_on("fed3", "127.0.71.5", port, hp);
    dns.set_addresses("fed.test", &[ip(&fed1), ip(&fed2)]);
    // federation-reader hashes the whole URI by default.
    let yaml = format!(
        "{}synapse:\n  pools:\n{}{}",
        discovery(&dns, "600s"),
        pool_yaml("main", &[&main], ""),
        named_pool("federation-reader", &format!("\"fed.test:{port}\""), hp, ""),
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let at = router.ports.synapse;
    let uris: Vec<String> = (0..60)
        .map(|i| format!("/_matrix/federation/v1/state_ids/!room{i}:x"))
        .collect();
    let placement = || -> Vec<String> { uris.iter().map(|u| served_by(at, u)).collect() };
    wait_until("both servers hold keys", Duration::from_secs(10), || {
        let p = placement();
        p.contains(&"fed1".into()) && p.contains(&"fed2".into())
    });
    let before = placement();
    assert_eq!(before, placement(), "the same URI goes to the same server");

    dns.set_addresses("fed.test", &[ip(&fed1), ip(&fed2), ip(&fed3)]);
    wait_until("fed3 takes its keys", Duration::from_secs(10), || {
        placement().contains(&"fed3".into())
    });
    let after = placement();
    for (i, (was, now)) in before.iter().zip(&after).enumerate() {
        assert!(
            now == was || now == "fed3",
            "{} moved from {was} to {now}",
            uris[i]
        );
    }

    dns.set_addresses("fed.test", &[ip(&fed1), ip(&fed2)]);
    wait_for_log_line(
        &router,
        &["server left the pool", &format!("addr={}", fed3.addr)],
        Duration::from_secs(5),
    );
    assert_eq!(placement(), before, "fed3's keys went back where they were");
}

#[test]
fn an_srv_name_gives_the_targets_and_their_ports() {
    let hp = free_port();
    let dns = DnsServer::start("127.0.72.1");
    let main = Standin::start("main", "127.0.72.2", hp);
    // Each on its own port: the SRV answer carries them.
    let fed: Vec<Standin> = (0..3)
        .map(|i| Standin::start(&format!("fed{i}"), &format!("127.0.72.{}", 3 + i), hp))
        .collect();
    for (i, s) in fed.iter().enumerate() {
        dns.set_addresses(&format!("fed-{i}.fed.test"), &[ip(s)]);
    }
    let target = |i: usize| Srv::new(&format!("fed-{i}.fed.test"), fed[i].addr.port());
    let name = "_synapse-http._tcp.fed.test";
    dns.set_srv(name, &[target(0), target(1)]);
    let yaml = format!(
        "{}synapse:\n  pools:\n{}{}",
        discovery(&dns, "600s"),
        pool_yaml("main", &[&main], ""),
        named_pool(
            "federation-reader",
            &format!("\"{name}\""),
            hp,
            "      balance: round-robin\n"
        ),
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let at = router.ports.synapse;
    let seen = |n: usize| -> Vec<String> { (0..n).map(|_| served_by(at, FED)).collect() };
    wait_until("both SRV targets serve", Duration::from_secs(10), || {
        let s = seen(6);
        s.contains(&"fed0".into()) && s.contains(&"fed1".into())
    });
    wait_for_log_line(
        &router,
        &[
            "server joined the pool",
            &format!("addr={}", fed[0].addr),
            &format!("from={name}"),
        ],
        Duration::from_secs(1),
    );

    // Without addresses in the answer the router looks the targets up itself.
    dns.set_glue(false);
    dns.set_srv(name, &[target(1), target(2)]);
    wait_until("the new target serves", Duration::from_secs(10), || {
        seen(4).contains(&"fed2".into())
    });
    wait_for_log_line(
        &router,
        &["server left the pool", &format!("addr={}", fed[0].addr)],
        Duration::from_secs(5),
    );
    let s = seen(20);
    assert!(!s.contains(&"fed0".into()), "{s:?}");

    // A target of a higher priority is a backup, unused while priority 0 has targets.
    let backup = Srv {
        priority: 10,
        ..target(0)
    };
    dns.set_srv(name, &[target(1), target(2), backup]);
    let asked = dns.questions();
    wait_until("the router asked again", Duration::from_secs(5), || {
        dns.questions() >= asked + 6
    });
    let s = seen(20);
    assert!(!s.contains(&"fed0".into()), "{s:?}");
    assert!(
        s.contains(&"fed1".into()) && s.contains(&"fed2".into()),
        "{s:?}"
    );
}

#[test]
fn a_dns_outage_keeps_the_last_answer_for_the_hold_then_empties_the_pools() {
    let hp = free_port();
    let mut dns = DnsServer::start("127.0.73.1");
    let main = Standin::start("main", "127.0.73.2", hp);
    let fed = Standin::start("fed", "127.0.73.3", hp);
    let media = Standin::start("media", "127.0.73.4", hp);
    dns.set_addresses("fed.test", &[ip(&fed)]);
    dns.set_addresses("media.test", &[ip(&media)]);
    // Noticing a failure takes a timed-out query per attempt (1 s each): leave room for it
    // inside the hold on a busy machine.
    let hold = Duration::from_secs(6);
    let fed_spec = format!("fed.test:{}", fed.addr.port());
    let media_spec = format!("media.test:{}", media.addr.port());
    let yaml = format!(
        "{}synapse:\n  pools:\n{}{}{}",
        discovery(&dns, "6s"),
        pool_yaml("main", &[&main], ""),
        named_pool("federation-reader", &format!("\"{fed_spec}\""), hp, ""),
        named_pool("media-repository", &format!("\"{media_spec}\""), hp, ""),
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    let at = router.ports.synapse;
    wait_until("both pools serve", Duration::from_secs(10), || {
        served_by(at, FED) == "fed" && served_by(at, MEDIA) == "media"
    });

    dns.stop();
    let stopped = Instant::now();
    let failed = |spec: &str| log_lines(&router, &["lookup failed", &format!("server={spec}")]);
    wait_until("the failure is noticed", hold, || {
        !failed(&fed_spec).is_empty() && !failed(&media_spec).is_empty()
    });
    assert!(
        stopped.elapsed() < hold,
        "noticed only after the hold: {:?}",
        stopped.elapsed()
    );
    assert_eq!(served_by(at, FED), "fed", "the last answer is kept");
    assert_eq!(served_by(at, MEDIA), "media", "the last answer is kept");

    let removed =
        |spec: &str| log_lines(&router, &["servers are removed", &format!("server={spec}")]);
    wait_until("the hold runs out", hold + Duration::from_secs(5), || {
        !removed(&fed_spec).is_empty() && !removed(&media_spec).is_empty()
    });
    assert!(
        stopped.elapsed() >= hold,
        "emptied before the hold ran out: {:?}",
        stopped.elapsed()
    );
    wait_for_log_line(
        &router,
        &["server left the pool", &format!("addr={}", fed.addr)],
        Duration::from_secs(1),
    );
    // federation-reader falls back to main; media-repository cannot, so it is refused.
    assert_eq!(served_by(at, FED), "main");
    assert_eq!(served_by(at, MEDIA), "status 429");
    router.wait_ready(503);

    // The failure was logged once per name, not once per interval.
    thread::sleep(Duration::from_millis(600));
    assert_eq!(failed(&fed_spec).len(), 1, "{}", router.log());
    assert_eq!(removed(&fed_spec).len(), 1, "{}", router.log());

    dns.resume();
    wait_for_log_line(
        &router,
        &["DNS answers again", &format!("server={fed_spec}")],
        Duration::from_secs(5),
    );
    wait_until("the servers are back", Duration::from_secs(10), || {
        served_by(at, FED) == "fed" && served_by(at, MEDIA) == "media"
    });
    router.wait_ready(200);
}
