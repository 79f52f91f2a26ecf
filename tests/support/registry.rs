//! A private image registry on loopback for the pull tests: Debian's `docker-registry` (the
//! CNCF distribution registry, 2.8) with htpasswd (bcrypt) authentication, its configuration,
//! storage and log in a temporary directory. Docker treats 127.0.0.0/8 as an insecure
//! registry by default, so `127.0.0.1:PORT/name:tag` needs no TLS.
//!
//! Images are built (from a local image plus a layer of random bytes) and pushed with
//! `docker --config DIR build/login/push`, DIR being the registry's own temporary directory,
//! so the host's `~/.docker` is never read or written. Dropping the
//! [`Registry`] kills the process, removes every local tag of it (pushed or pulled since) and
//! the temporary directory, also when the test panics.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http;

/// Where Debian's package puts the binary, for a PATH without /usr/bin.
const DEBIAN_BINARY: &str = "/usr/bin/docker-registry";

/// A running registry: `address` is `127.0.0.1:PORT`, its one account `username`/`password`.
pub struct Registry {
    child: Child,
    pub address: String,
    pub username: String,
    pub password: String,
    dir: tempfile::TempDir,
    tags: Mutex<Vec<String>>,
}

fn binary() -> Option<PathBuf> {
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    [
        PathBuf::from("docker-registry"),
        PathBuf::from(DEBIAN_BINARY),
    ]
    .into_iter()
    .find(|p| runs(p))
}

fn htpasswd_available() -> bool {
    Command::new("htpasswd")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Run `cmd` with `input` on its stdin; its output.
fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

impl Registry {
    /// Start a registry with one account of random credentials and wait (at most 30 s) until
    /// it answers `GET /v2/` with 401. `None` (after printing `skipped: ...`) when
    /// `docker-registry` or `htpasswd` is not installed, unless `CI` is set: CI installs both
    /// (.ci/run), so there a missing one fails the test.
    pub fn start() -> Option<Registry> {
        let (Some(binary), true) = (binary(), htpasswd_available()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "docker-registry or htpasswd is missing, and CI installs both \
                 (apt-get install docker-registry apache2-utils)"
            );
            eprintln!(
                "skipped: docker-registry or htpasswd is not installed \
                 (apt-get install docker-registry apache2-utils)"
            );
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::tempdir().expect("temporary directory");
        let username = format!("ess-test-{}-{n}", std::process::id());
        let password = format!("pw-{}", random_hex());

        let htpasswd = dir.path().join("htpasswd");
        let out = run_with_stdin(
            Command::new("htpasswd").args(["-B", "-i", "-n", &username]),
            &password,
        );
        assert!(
            out.status.success(),
            "htpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");

        let port = crate::free_port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {address}\n  secret: {secret}\n\
                 auth:\n  htpasswd:\n    realm: ess-suite-test\n    path: {htpasswd}\n",
                storage = dir.path().join("storage").display(),
                secret = random_hex(),
                htpasswd = htpasswd.display(),
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} serve: {e}", binary.display()));
        let mut registry = Registry {
            child,
            address,
            username,
            password,
            dir,
            tags: Mutex::new(Vec::new()),
        };
        registry.wait_until_answering(Duration::from_secs(30));
        Some(registry)
    }

    fn wait_until_answering(&mut self, timeout: Duration) {
        let addr: SocketAddr = self.address.parse().expect("loopback address");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(answer) = http::try_request(addr, "GET", "/v2/", &[], b"") {
                assert_eq!(
                    answer.status,
                    401,
                    "GET /v2/ without credentials; log:\n{}",
                    self.log()
                );
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {addr} within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `docker --config <private dir> ARGS`, with `stdin`.
    fn docker(&self, args: &[&str], stdin: &str) -> Output {
        let config = self.dir.path().join("docker-config");
        std::fs::create_dir_all(&config).expect("docker config dir");
        run_with_stdin(
            Command::new("docker")
                .arg("--config")
                .arg(&config)
                .args(args),
            stdin,
        )
    }

    fn docker_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.docker(args, stdin);
        assert!(
            out.status.success(),
            "docker {} failed: {}; registry log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Build an image from the local image `base` with one more layer of `payload_bytes`
    /// random bytes, as `<address>/<repository>:<unique tag>`, push it with `docker login`
    /// credentials, then remove it locally again: only its new layer is gone, so a pull must
    /// download that layer and finds the base's layers present. Returns the reference.
    pub fn push_derived(&self, base: &str, repository: &str, payload_bytes: usize) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let reference = format!(
            "{}/{repository}:t{}-{n}-{}",
            self.address,
            std::process::id(),
            &random_hex()[..8]
        );
        // Recorded first, so the tag is removed even when a step below fails.
        self.tags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(reference.clone());

        let context = tempfile::tempdir().expect("build context");
        // Random, so the layer's compressed size is its size.
        let mut payload = vec![0u8; payload_bytes];
        random_bytes(&mut payload);
        std::fs::write(context.path().join("payload"), payload).expect("write payload");
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {base}\nCOPY payload /registry-test-payload\n"),
        )
        .expect("write Dockerfile");
        let context_path = context.path().display().to_string();
        let built = self.docker(
            &["build", "--quiet", "--tag", &reference, &context_path],
            "",
        );
        assert!(
            built.status.success(),
            "docker build FROM {base} failed: {}",
            String::from_utf8_lossy(&built.stderr).trim()
        );

        self.docker_ok(
            &[
                "login",
                &self.address,
                "--username",
                &self.username,
                "--password-stdin",
            ],
            &self.password,
        );
        self.docker_ok(&["push", &reference], "");
        self.docker_ok(&["image", "rm", &reference], "");
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // No panics in here: a second one during unwinding would abort the test process.
        if std::thread::panicking() {
            eprintln!("--- docker-registry log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let tags = self
            .tags
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for tag in tags.iter() {
            // Untags (the stand-in image keeps its own tag); absent is fine.
            let _ = Command::new("docker")
                .args(["image", "rm", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn random_bytes(buffer: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, buffer))
        .expect("read /dev/urandom");
}

/// 32 random hexadecimal digits from the OS.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
