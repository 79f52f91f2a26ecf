//! Shared support for the end-to-end tests and benchmarks: the workspace's own binaries,
//! free loopback ports and waiting for a listener.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Path of a binary of this workspace, built (once per test process) with the same profile
/// as the tests, so a test never runs a stale binary.
pub fn cargo_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    // tests run from target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(name);

    if !built.iter().any(|b| b == name) {
        // Every target of the workspace, as `cargo test --workspace` selects them: the same
        // selection resolves the same dependency features (criterion, a dev-dependency, adds
        // some), so this reuses the test build instead of compiling the dependencies again.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--all-targets"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_string());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Poll `condition` until it holds, or panic naming `what` after 15 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until something accepts TCP connections on `addr`, or panic after `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub mod dns;
pub mod docker;
pub mod haproxy;
pub mod http;
pub mod processes;
pub mod registry;
