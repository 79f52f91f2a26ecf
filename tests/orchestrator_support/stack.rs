//! A stack of `essctl` on a real Docker daemon with the `ess-standin` stand-in image (a TEST
//! STAND-IN answering health and identity on each service's ports) in place of every service
//! but the router: a unique project and front network, torn down (volumes included) when
//! dropped, even when the test panics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use ess_suite::docker::{docker, images};

use super::{essctl, stderr, stdout, write_deployment};

/// How each service's stand-in listens: its ports as in `essctl::stack`, `{name}` being the
/// service name, so the identity answer names the container that served it. Like the real
/// services, a stand-in exits at start when it cannot read its keys and passfile or write its
/// volume as the user essctl runs it as (the chart's), so every `up` here checks that too.
pub const OVERRIDES: &str = r#"services:
  postgres: {command: [--name, "{name}", --listen, "0.0.0.0:5432", --require-readable, /secrets/POSTGRES_ADMIN_PASSWORD, --require-writable, /var/lib/postgresql/data], readiness: {http: {port: 5432, path: /health}}}
  redis: {command: [--name, "{name}", --listen, "0.0.0.0:6379"], readiness: {tcp: {port: 6379}}}
  synapse: {command: [--name, "{name}", --listen, "0.0.0.0:8008", --listen, "0.0.0.0:9093", --health-listen, "0.0.0.0:8080", --require-readable, /secrets/SYNAPSE_SIGNING_KEY, --require-readable, /conf/pgpass, --require-writable, /media]}
  federation_reader: {command: [--name, "{name}", --listen, "0.0.0.0:8008", --health-listen, "0.0.0.0:8080", --require-readable, /secrets/SYNAPSE_SIGNING_KEY, --require-readable, /conf/pgpass]}
  mas: {command: [--name, "{name}", --listen, "0.0.0.0:8080", --health-listen, "0.0.0.0:8081", --require-readable, /secrets/MAS_RSA_PRIVATE_KEY]}
  mas-migrate: {command: [--version]}
  element_web: {command: [--name, "{name}", --listen, "0.0.0.0:8080"]}
  element_admin: {command: [--name, "{name}", --listen, "0.0.0.0:8080"]}
  livekit: {command: [--name, "{name}", --listen, "0.0.0.0:7880", --require-readable, /conf/keys.yaml], publish: [{port: 30001, host_ip: 127.0.0.1, host_port: 0}, {port: 30002, protocol: udp, host_ip: 127.0.0.1, host_port: 0}]}
  lk_jwt: {command: [--name, "{name}", --listen, "0.0.0.0:8080"]}
  router: {publish: [{port: 8008, host_ip: 127.0.0.1, host_port: 0}]}
"#;

/// One test's deployment: a temporary directory, a unique project and front network, torn
/// down (volumes included) when dropped.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub project: String,
    pub front: String,
    pub overrides: PathBuf,
}

impl Stack {
    /// `patch` replaces one line of the stand-in overrides.
    pub fn new(patch: Option<(&str, &str)>) -> Stack {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let images = images();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let project = format!("esst-{}-{n}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let overrides = dir.path().join("overrides.yaml");
        let text = match patch {
            Some((from, to)) => OVERRIDES.replace(from, to),
            None => OVERRIDES.to_owned(),
        };
        std::fs::write(&overrides, text).unwrap();
        let stack = Stack {
            front: format!("{project}-front"),
            project,
            dir,
            overrides,
        };
        assert_eq!(
            images.standin, "ess-standin:test",
            "the test images are the default tags"
        );
        stack
    }

    pub fn write(&self, readers: u8, extra: &str) -> PathBuf {
        let s = &images().standin;
        let images_section = format!(
            "images:\n  postgres: {s}\n  redis: {s}\n  synapse: {s}\n  federation_reader: {s}\n  \
             mas: {s}\n  element_web: {s}\n  element_admin: {s}\n  livekit: {s}\n  lk_jwt: {s}\n  \
             router: {}\n",
            images().router
        );
        write_deployment(
            self.dir.path(),
            &format!(
                "{images_section}synapse:\n  federation_readers: {readers}\n{extra}front_proxy:\n  network: {}\n",
                self.front
            ),
        )
    }

    pub fn config(&self) -> String {
        self.dir
            .path()
            .join("deployment.yaml")
            .display()
            .to_string()
    }

    pub fn run(&self, verb: &[&str]) -> Output {
        self.run_with_env(verb, &[])
    }

    /// [`Stack::run`] with `env` added to essctl's environment.
    pub fn run_with_env(&self, verb: &[&str], env: &[(&str, &str)]) -> Output {
        let config = self.config();
        let overrides = self.overrides.display().to_string();
        let mut args: Vec<&str> = verb.to_vec();
        args.extend([
            "--config",
            &config,
            "--project",
            &self.project,
            "--overrides",
            &overrides,
        ]);
        essctl(&args, env)
    }

    pub fn ok(&self, verb: &[&str]) -> String {
        let out = self.run(verb);
        assert!(
            out.status.success(),
            "essctl {verb:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Container name -> id of every container of the project.
    pub fn containers(&self) -> BTreeMap<String, String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Names}} {{.ID}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, id)| (n.to_owned(), id.to_owned()))
            .collect()
    }

    /// The project network and the front network, those of them that exist.
    pub fn networks(&self) -> Vec<String> {
        let out = docker(&["network", "ls", "--format", "{{.Name}}"]);
        let ours = [format!("{}_default", self.project), self.front.clone()];
        out.lines()
            .filter(|n| ours.iter().any(|o| o == n))
            .map(str::to_owned)
            .collect()
    }

    pub fn volumes(&self) -> Vec<String> {
        let out = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ]);
        out.lines().map(str::to_owned).collect()
    }

    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.project)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = essctl(&["down", "--volumes", "--project", &self.project], &[]);
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.front])
            .output();
    }
}
