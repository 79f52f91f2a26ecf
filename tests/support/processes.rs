//! The real binaries under test, started on loopback and always stopped: the router with a
//! generated configuration, and stand-ins for Synapse processes.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http;
use crate::{cargo_bin, wait_for_tcp};

/// A child process killed and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Send a signal by name (TERM, HUP, QUIT...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }
}

/// A free port on one loopback address.
pub fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
}

/// A stand-in Synapse process: identity answers on `addr`, `/health` on `health`.
pub struct Standin {
    pub name: String,
    pub addr: SocketAddr,
    pub health: SocketAddr,
    pub process: Guard,
}

impl Standin {
    /// Start on `ip` (use a distinct 127.0.0.x per server, so every server can share one
    /// health port number in the router's configuration, as Synapse's 8080 does).
    pub fn start(name: &str, ip: &str, health_port: u16) -> Standin {
        // A port free on `ip` may be the health port's number: that one is taken below.
        let port = std::iter::repeat_with(|| free_port_on(ip))
            .find(|p| *p != health_port)
            .expect("a free port");
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
        let health: SocketAddr = format!("{ip}:{health_port}").parse().expect("addr");
        Standin::start_at(name, addr, health)
    }

    /// Start with identity answers on `addr` and `/health` on `health`.
    pub fn start_at(name: &str, addr: SocketAddr, health: SocketAddr) -> Standin {
        let child = Command::new(cargo_bin("ess-standin"))
            .args(["--name", name, "--listen", &addr.to_string()])
            .args(["--health-listen", &health.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ess-standin");
        let process = Guard(child);
        wait_for_tcp(addr, Duration::from_secs(10));
        wait_for_tcp(health, Duration::from_secs(10));
        Standin {
            name: name.to_string(),
            addr,
            health,
            process,
        }
    }

    /// Make `/health` pass or fail.
    pub fn set_healthy(&self, healthy: bool) {
        let action = if healthy { "pass" } else { "fail" };
        let r = http::request(
            self.addr,
            "POST",
            &format!("/_standin/health/{action}"),
            &[],
        );
        assert!(r.status < 300, "health {action}: {}", r.status);
    }

    pub fn stats(&self) -> serde_json::Value {
        http::get(self.addr, "/_standin/stats").json()
    }
}

/// The router's listener addresses.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub synapse: SocketAddr,
    pub blackhole: SocketAddr,
    pub well_known: SocketAddr,
    pub metrics: SocketAddr,
    pub startup: SocketAddr,
}

impl Ports {
    /// Five ports on a loopback address of their own. Client sockets on loopback all have
    /// 127.0.0.1 as their address, so none of the thousands a test opens can take one of
    /// these ports between this choice and the router's bind.
    pub fn free() -> Ports {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ip = format!(
            "127.{}.{}.{}",
            100 + std::process::id() % 100,
            n / 200 % 250,
            n % 200 + 2
        );
        // Held together, so that the five are different ports.
        let held: Vec<std::net::TcpListener> = (0..5)
            .map(|_| {
                std::net::TcpListener::bind((ip.as_str(), 0))
                    .unwrap_or_else(|e| panic!("bind {ip}:0: {e}"))
            })
            .collect();
        let addr = |i: usize| held[i].local_addr().expect("local address");
        Ports {
            synapse: addr(0),
            blackhole: addr(1),
            well_known: addr(2),
            metrics: addr(3),
            startup: addr(4),
        }
    }

    fn yaml(&self) -> String {
        format!(
            "listeners:\n  synapse: \"{}\"\n  blackhole: \"{}\"\n  well_known: \"{}\"\n  metrics: \"{}\"\n  startup: \"{}\"\n",
            self.synapse, self.blackhole, self.well_known, self.metrics, self.startup
        )
    }
}

/// A running ess-router with its configuration and log in a temporary directory.
pub struct RouterProcess {
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub process: Guard,
}

impl RouterProcess {
    /// Start with `yaml` (everything but `listeners`, which is added on free ports) and
    /// wait until every listener accepts connections.
    pub fn start(yaml: &str) -> RouterProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = Ports::free();
        let config = dir.path().join("router.yaml");
        fs::write(
            &config,
            format!(
                "{}shutdown:\n  grace_period: 2s\n  drain_timeout: 1s\n{yaml}",
                ports.yaml()
            ),
        )
        .expect("write config");
        let process = Self::spawn(&dir, &config, &[]);
        let mut router = RouterProcess {
            ports,
            dir,
            config,
            process,
        };
        router.wait_listening();
        router
    }

    /// Wait until every listener accepts connections; panic with the router's log when it
    /// exits first or takes over 20 s.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [
            self.ports.synapse,
            self.ports.blackhole,
            self.ports.well_known,
            self.ports.metrics,
            self.ports.startup,
        ] {
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Ok(Some(status)) = self.process.0.try_wait() {
                    panic!(
                        "ess-router exited ({status}) before listening on {addr}; log:\n{}",
                        self.log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "nothing listens on {addr} after 20 s; log:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }

    pub fn spawn(dir: &tempfile::TempDir, config: &std::path::Path, extra: &[&str]) -> Guard {
        let out = fs::File::create(dir.path().join("stdout.log")).expect("log file");
        let err = fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let child = Command::new(cargo_bin("ess-router"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--upgrade-sock")
            .arg(dir.path().join("upgrade.sock"))
            .arg("--pid-file")
            .arg(dir.path().join("router.pid"))
            .args(extra)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start ess-router");
        Guard(child)
    }

    /// The access log of the requests answered so far. The router writes it in batches at
    /// least every 50 ms: wait out one batch first.
    pub fn access_log(&self) -> String {
        std::thread::sleep(Duration::from_millis(150));
        fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The operational log written so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Poll `/synapse_ready` until it answers `want`, or panic with the router's log.
    pub fn wait_ready(&self, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = http::try_request(self.ports.startup, "GET", "/synapse_ready", &[], b"")
                .map(|r| r.status)
                .unwrap_or(0);
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/synapse_ready stayed {status}, wanted {want}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the access log has at least `n` lines containing `needle`.
    pub fn wait_for_log(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
            if log.lines().filter(|l| l.contains(needle)).count() >= n {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {n} log lines with {needle}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A pool entry for a router configuration: `servers` and a fast health check on the
/// stand-ins' shared health port, plus `extra` YAML lines (indented six spaces).
pub fn pool_yaml(name: &str, servers: &[&Standin], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    let health_port = servers.first().map_or(8080, |s| s.health.port());
    format!(
        "    {name}:\n      servers: [{}]\n      health_check: {{port: {health_port}, interval: 100ms, timeout: 500ms, fall: 2, rise: 2}}\n{extra}",
        list.join(", ")
    )
}

/// A `/health` endpoint that passes after `delay`, like a Synapse busy at start: every
/// check the router makes takes that long.
pub struct SlowHealth {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowHealth {
    pub fn start(ip: &str, delay: Duration) -> SlowHealth {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the health port");
        let addr = listener.local_addr().expect("local address");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request);
                    std::thread::sleep(delay);
                    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK");
                });
            }
        });
        SlowHealth { addr, stop }
    }
}

impl Drop for SlowHealth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees the flag.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
