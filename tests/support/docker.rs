//! Docker for the image tests, through the `docker` CLI: the images built once per test
//! process, and a sandbox whose network and containers all have unique names and are removed
//! when it drops, even when the test panics.
//!
//! Everything a sandbox creates carries the label `ess-suite.test`; after a test process was
//! killed, `docker rm -f $(docker ps -aq --filter label=ess-suite.test)` and
//! `docker network prune --filter label=ess-suite.test` clean up.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::http;

const LABEL: &str = "ess-suite.test";

/// The tags of the images built from this tree.
#[derive(Debug)]
pub struct Images {
    pub router: String,
    pub standin: String,
}

/// Build both images with `scripts/build-images.sh`, once per test process. Panics when the
/// Docker daemon is not reachable: these tests are meant to run, and CI starts `dockerd`.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        require_daemon();
        let images = Images {
            router: std::env::var("ESS_ROUTER_IMAGE").unwrap_or_else(|_| "ess-router:dev".into()),
            standin: std::env::var("ESS_STANDIN_IMAGE")
                .unwrap_or_else(|_| "ess-standin:test".into()),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-images.sh");
        let started = Instant::now();
        // The binaries the tests run: under .ci/run they are static already and go into the
        // images as they are; otherwise the script builds static ones.
        let router = crate::cargo_bin("ess-router");
        crate::cargo_bin("ess-standin");
        let bin_dir = router.parent().expect("target/<profile>");
        let status = Command::new(&script)
            .arg("--from")
            .arg(bin_dir)
            .env("ESS_ROUTER_IMAGE", &images.router)
            .env("ESS_STANDIN_IMAGE", &images.standin)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(status.success(), "{} failed ({status})", script.display());
        eprintln!("images built in {:.1?}", started.elapsed());
        images
    })
}

/// Panic with a hint unless `docker info` reaches a daemon.
pub fn require_daemon() {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the Docker daemon is not reachable (docker info: {}); start it, e.g. \
             `dockerd > /tmp/dockerd.log 2>&1 &` (.ci/run does so in CI)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run the docker CLI ({e}); install docker.io"),
    }
}

/// Run `docker ARGS`, panic with its stderr when it fails, return its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the daemon has an image of this reference (`docker image inspect` succeeds).
pub fn image_present(reference: &str) -> bool {
    docker_output(&["image", "inspect", "--format", "{{.Id}}", reference])
        .status
        .success()
}

fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run docker {}: {e}", args.join(" ")))
}

/// One test's user-defined network and the containers started on it.
pub struct Sandbox {
    pub network: String,
    containers: Mutex<Vec<String>>,
}

impl Sandbox {
    /// A new network named `ess-test-<pid>-<n>`.
    pub fn new() -> Sandbox {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        require_daemon();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let network = format!("ess-test-{}-{n}", std::process::id());
        docker(&["network", "create", "--label", LABEL, &network]);
        Sandbox {
            network,
            containers: Mutex::new(Vec::new()),
        }
    }

    /// Start `image` detached on this network as `<network>-<name>`, with `options` for
    /// `docker run` and `args` for the image's entry point.
    pub fn run(&self, name: &str, options: &[&str], image: &str, args: &[&str]) -> Container {
        let full = format!("{}-{name}", self.network);
        // Recorded before `docker run`, which may create the container and still fail.
        self.containers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(full.clone());
        let mut cmd = vec![
            "run",
            "--detach",
            "--name",
            &full,
            "--network",
            &self.network,
        ];
        cmd.extend(["--label", LABEL]);
        cmd.extend(options);
        cmd.push(image);
        cmd.extend(args);
        docker(&cmd);
        Container { name: full }
    }

    /// An ess-standin container answering as `name` on 8008, with `/health` on 8080 too, as
    /// a Synapse process does.
    pub fn run_standin(&self, name: &str) -> Container {
        let args = [
            "--name",
            name,
            "--listen",
            "0.0.0.0:8008",
            "--health-listen",
            "0.0.0.0:8080",
        ];
        self.run(name, &[], &images().standin, &args)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let containers = self
            .containers
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A failing test is easier to read with what its containers said.
        if std::thread::panicking() {
            for name in containers.iter() {
                let logs = docker_output(&["logs", "--tail", "40", name]);
                eprintln!(
                    "--- docker logs {name}:\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
        // No panics in here: a second one during unwinding would abort the test process.
        if !containers.is_empty() {
            let mut rm = vec!["rm", "--force", "--volumes"];
            rm.extend(containers.iter().map(String::as_str));
            let _ = docker_output(&rm);
        }
        let _ = docker_output(&["network", "rm", &self.network]);
    }
}

/// A container started by a [`Sandbox`], which removes it.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// The loopback address the container's TCP `port` is published on (`-p 127.0.0.1::PORT`).
    pub fn published(&self, port: u16) -> SocketAddr {
        let out = docker(&["port", &self.name, &format!("{port}/tcp")]);
        out.lines()
            .find_map(|line| {
                line.trim()
                    .parse::<SocketAddr>()
                    .ok()
                    .filter(SocketAddr::is_ipv4)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: port {port} is not published on IPv4: {out:?}",
                    self.name
                )
            })
    }

    /// `docker inspect --format FORMAT` of this container.
    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name])
    }

    /// Everything the container wrote to stdout and stderr.
    pub fn logs(&self) -> String {
        let out = docker_output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Poll `GET target` on `addr` until it answers `want`, or panic with the container's log.
    /// Connection errors count as not yet: a published port accepts before the process does.
    pub fn wait_for_status(&self, addr: SocketAddr, target: &str, want: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = http::try_request(addr, "GET", target, &[], b"").map_or(0, |r| r.status);
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{target} on {addr} stayed {status}, wanted {want}; {} log:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
