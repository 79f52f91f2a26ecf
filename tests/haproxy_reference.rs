//! The HAProxy reference that `ess-haproxy-config` renders from a router configuration:
//! HAProxy 2.6 accepts it, and it routes and answers like the chart's HAProxy. These are the
//! chart's side of the comparisons the router's tests and the load benchmark make.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ess_suite::http::{get, request, try_request, Response};
use ess_suite::processes::{pool_yaml, Guard, Ports, Standin};
use ess_suite::{cargo_bin, free_port, wait_for_tcp};

const HAPROXY: &str = "haproxy";

/// HAProxy running the configuration rendered from a router configuration.
struct Haproxy {
    ports: Ports,
    dir: tempfile::TempDir,
    _process: Guard,
}

impl Haproxy {
    /// Render `yaml` (a router configuration without `listeners`, which are added on free
    /// ports) and start HAProxy on it.
    fn start(yaml: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = Ports::free();
        let listeners = format!(
            "listeners:\n  synapse: \"{}\"\n  blackhole: \"{}\"\n  well_known: \"{}\"\n  \
             metrics: \"{}\"\n  startup: \"{}\"\n",
            ports.synapse, ports.blackhole, ports.well_known, ports.metrics, ports.startup
        );
        let config = dir.path().join("router.yaml");
        fs::write(&config, format!("{listeners}{yaml}")).expect("write router.yaml");
        let rendered = render(&config, &dir.path().join("haproxy"));

        let log = |name: &str| fs::File::create(dir.path().join(name)).expect("log file");
        let process = Command::new(HAPROXY)
            .args(["-db", "-f"])
            .arg(&rendered)
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .expect("start haproxy (apt-get install haproxy)");
        let haproxy = Haproxy {
            ports,
            dir,
            _process: Guard(process),
        };
        wait_for_tcp(ports.synapse, Duration::from_secs(10));
        haproxy
    }

    fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("stdout.log"))
    }

    /// Poll `/synapse_ready` until it answers 200.
    fn wait_ready(&self) {
        self.wait_until("/synapse_ready is 200", || {
            try_request(self.ports.startup, "GET", "/synapse_ready", &[], b"")
                .is_ok_and(|r| r.status == 200)
        });
    }

    fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "never {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Run the generator; returns the haproxy.cfg it wrote.
fn render(router_config: &Path, out: &Path) -> std::path::PathBuf {
    let status = Command::new(cargo_bin("ess-haproxy-config"))
        .arg("--config")
        .arg(router_config)
        .arg("--out")
        .arg(out)
        .stderr(Stdio::null())
        .status()
        .expect("run ess-haproxy-config");
    assert!(
        status.success(),
        "ess-haproxy-config failed on {}",
        router_config.display()
    );
    out.join("haproxy.cfg")
}

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
