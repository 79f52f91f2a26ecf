//! The stand-in's own contract, which the proxy tests rely on: the identity answer, the
//! `X-Standin-*` controls, the health switch and the request counters.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `ess-standin` with one identity and one health listener, killed on drop.
struct Standin {
    child: Child,
    identity: SocketAddr,
    health: SocketAddr,
}

impl Standin {
    fn start(name: &str, extra_args: &[&str]) -> Self {
        let mut child = Command::new(ess_suite::cargo_bin("ess-standin"))
            .args(["--name", name, "--listen", "127.0.0.1:0"])
            .args(["--health-listen", "127.0.0.1:0"])
            .args(extra_args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ess-standin");

        // The stand-in prints identity addresses first, then health ones.
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut bound = || {
            let mut line = String::new();
            stderr.read_line(&mut line).expect("read stderr");
            line.trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected stderr line {line:?}"))
                .parse::<SocketAddr>()
                .expect("bound address")
        };
        let identity = bound();
        let health = bound();
        Standin {
            child,
            identity,
            health,
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// One HTTP/1.1 exchange on a fresh connection, written by hand so the test controls every
/// header byte, including repeated headers.
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the stand-in");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");

    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: standin.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .expect("send the request");

    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, target: &str) -> Reply {
    send(addr, "GET", target, &[], "")
}

#[test]
fn identity_answer_names_the_server_and_describes_the_request() {
    let standin = Standin::start("synapse-main", &[]);

    let reply = send(
        standin.identity,
        "POST",
        "/_matrix/client/v3/rooms/!a:x/send?access_token=t&x=%2F",
        &[("X-Twice", "first"), ("X-Twice", "second")],
        "hello",
    );

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let identity = reply.json();
    assert_eq!(identity["server"], "synapse-main");
    assert_eq!(identity["method"], "POST");
    assert_eq!(identity["path"], "/_matrix/client/v3/rooms/!a:x/send");
    assert_eq!(identity["query"], "access_token=t&x=%2F");
    assert_eq!(identity["headers"]["host"], "standin.test");
    assert_eq!(identity["headers"]["x-twice"], json!(["first", "second"]));
    assert_eq!(identity["body_len"], 5);
}

#[test]
fn identity_answer_without_query_reports_null() {
    let standin = Standin::start("main", &[]);
    assert_eq!(get(standin.identity, "/plain").json()["query"], Value::Null);
}

#[test]
fn control_headers_choose_status_content_type_and_encoding() {
    let standin = Standin::start("main", &[]);

    let reply = send(
        standin.identity,
        "GET",
        "/x",
        &[
            ("X-Standin-Status", "418"),
            ("X-Standin-Content-Type", "text/html; charset=utf-8"),
            ("X-Standin-Content-Encoding", "gzip"),
        ],
        "",
    );

    assert_eq!(reply.status, 418);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert!(
        reply.body.len() >= 200,
        "body of {} bytes not padded",
        reply.body.len()
    );
    assert_eq!(
        reply.json()["server"],
        "main",
        "padding keeps the JSON readable"
    );
}

#[test]
fn delay_header_holds_the_answer_back() {
    let standin = Standin::start("main", &[]);

    let started = Instant::now();
    let reply = send(
        standin.identity,
        "GET",
        "/slow",
        &[("X-Standin-Delay-Ms", "300")],
        "",
    );

    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn nonsense_control_header_is_answered_400() {
    let standin = Standin::start("main", &[]);

    let reply = send(
        standin.identity,
        "GET",
        "/",
        &[("X-Standin-Status", "teapot")],
        "",
    );

    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("x-standin-status"), "{}", reply.body);
}

#[test]
fn health_switch_applies_to_every_listener() {
    let standin = Standin::start("main", &[]);
    for addr in [standin.identity, standin.health] {
        let reply = get(addr, "/health");
        assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    }

    assert_eq!(
        send(standin.health, "POST", "/_standin/health/fail", &[], "").status,
        200
    );
    for addr in [standin.identity, standin.health] {
        assert_eq!(get(addr, "/health").status, 503);
    }

    assert_eq!(
        send(standin.identity, "POST", "/_standin/health/pass", &[], "").status,
        200
    );
    for addr in [standin.identity, standin.health] {
        assert_eq!(get(addr, "/health").status, 200);
    }
}

#[test]
fn health_switch_only_moves_on_post() {
    let standin = Standin::start("main", &[]);

    assert_eq!(get(standin.health, "/_standin/health/fail").status, 405);
    assert_eq!(get(standin.health, "/health").status, 200);
}

#[test]
fn health_listener_gives_no_identity_answer() {
    let standin = Standin::start("main", &[]);
    assert_eq!(get(standin.health, "/_matrix/client/versions").status, 404);
}

#[test]
fn stats_count_identity_requests_and_their_peak_concurrency() {
    let standin = Standin::start("main", &[]);
    let identity = standin.identity;

    let slow: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                send(
                    identity,
                    "GET",
                    "/slow",
                    &[("X-Standin-Delay-Ms", "500")],
                    "",
                )
                .status
            })
        })
        .collect();
    for request in slow {
        assert_eq!(request.join().expect("request thread"), 200);
    }
    get(identity, "/health");

    let stats = get(standin.health, "/_standin/stats").json();
    assert_eq!(
        stats,
        json!({ "requests": 3, "in_flight": 0, "max_in_flight": 3 })
    );
}

#[test]
fn fixed_body_answers_a_small_constant_body() {
    let standin = Standin::start("bench", &["--fixed-body", "--threads", "2"]);

    let first = get(standin.identity, "/a?b=c");
    let second = send(
        standin.identity,
        "POST",
        "/other",
        &[("X-Any", "1")],
        "body",
    );

    assert_eq!(first.json(), json!({ "server": "bench" }));
    assert_eq!(first.body, second.body);
    assert_eq!(first.header("content-type"), Some("application/json"));
}

#[test]
fn sigterm_stops_the_stand_in_cleanly() {
    let mut standin = Standin::start("main", &[]);

    let killed = Command::new("kill")
        .args(["-TERM", &standin.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());

    let status = standin.child.wait().expect("wait for the stand-in");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_file_it_cannot_read_or_a_directory_it_cannot_write_stops_it_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("signing.key");
    let out = Command::new(ess_suite::cargo_bin("ess-standin"))
        .args(["--name", "s", "--listen", "127.0.0.1:0"])
        .arg("--require-readable")
        .arg(&missing)
        .output()
        .expect("run ess-standin");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );

    let out = Command::new(ess_suite::cargo_bin("ess-standin"))
        .args(["--name", "s", "--listen", "127.0.0.1:0"])
        .args(["--require-writable", "/proc"])
        .output()
        .expect("run ess-standin");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write in /proc"));
}

#[test]
fn invoked_as_chown_it_gives_a_path_to_a_numeric_owner() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let chown = dir.path().join("chown");
    std::os::unix::fs::symlink(ess_suite::cargo_bin("ess-standin"), &chown).unwrap();
    let target = dir.path().join("volume");
    std::fs::create_dir(&target).unwrap();
    // The tests run as root (as CI does); anyone else may give a file only to themselves.
    let me = std::fs::metadata("/proc/self").unwrap();
    let (uid, gid) = if me.uid() == 0 {
        (10091, 10091)
    } else {
        (me.uid(), me.gid())
    };

    let out = Command::new(&chown)
        .arg(format!("{uid}:{gid}"))
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));

    let out = Command::new(&chown)
        .args(["synapse", "/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected numeric UID:GID"));
}
