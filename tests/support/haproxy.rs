//! HAProxy 2.6 running the configuration `ess-haproxy-config` renders from a router
//! configuration: the chart's side of every comparison.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::try_request;
use crate::processes::{Guard, Ports};
use crate::{cargo_bin, wait_for_tcp};

pub const HAPROXY: &str = "haproxy";

/// HAProxy running the configuration rendered from a router configuration.
pub struct Haproxy {
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    _process: Guard,
}

impl Haproxy {
    /// Render `yaml` (a router configuration without `listeners`, which are added on free
    /// ports) and start HAProxy on it.
    pub fn start(yaml: &str) -> Haproxy {
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

    pub fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("stdout.log"))
    }

    /// Poll `/synapse_ready` until it answers 200.
    pub fn wait_ready(&self) {
        self.wait_until("/synapse_ready is 200", || {
            try_request(self.ports.startup, "GET", "/synapse_ready", &[], b"")
                .is_ok_and(|r| r.status == 200)
        });
    }

    pub fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
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
pub fn render(router_config: &Path, out: &Path) -> std::path::PathBuf {
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
