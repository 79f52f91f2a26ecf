//! The router's container image, run as it is meant to be: read-only root, unprivileged user,
//! on a user-defined network where the stand-in Synapse processes are found by container name.
//! Needs a Docker daemon (CI starts one); the images are built from this tree first.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ess_suite::docker::{docker, images, Container, Sandbox};
use ess_suite::http::get;

/// Two stand-ins and a router in front of them; only the router's synapse and startup ports
/// are published, on loopback.
struct Stack {
    router: Container,
    synapse: SocketAddr,
    startup: SocketAddr,
    // Dropped in this order: the containers go before the configuration they mount.
    _sandbox: Sandbox,
    _config: tempfile::TempDir,
}

fn start_stack() -> Stack {
    let images = images();
    let sandbox = Sandbox::new();
    let main = sandbox.run_standin("main");
    let reader = sandbox.run_standin("federation-reader");

    let health = "health_check: {interval: 200ms, timeout: 1s, fall: 2, rise: 1}";
    let config = format!(
        r#"listeners:
  synapse: "0.0.0.0:8008"
  blackhole: "0.0.0.0:8009"
  well_known: "0.0.0.0:8010"
  metrics: "0.0.0.0:8405"
  startup: "0.0.0.0:8406"
shutdown:
  grace_period: 0s
  drain_timeout: 2s
synapse:
  pools:
    main:
      servers: ["{main}:8008"]
      {health}
    federation-reader:
      servers: ["{reader}:8008"]
      {health}
"#,
        main = main.name,
        reader = reader.name,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("router.yaml");
    fs::write(&path, config).expect("write router.yaml");
    // The router reads it as uid 65532, whatever the umask of the test.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod router.yaml");

    let mount = format!("{}:/etc/ess-router/router.yaml:ro", path.display());
    let options = [
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--volume",
        &mount,
        "--publish",
        "127.0.0.1::8008",
        "--publish",
        "127.0.0.1::8406",
    ];
    let args = ["run", "--config", "/etc/ess-router/router.yaml"];
    let router = sandbox.run("router", &options, &images.router, &args);
    let synapse = router.published(8008);
    let startup = router.published(8406);
    router.wait_for_status(startup, "/synapse_ready", 200, Duration::from_secs(30));
    Stack {
        router,
        synapse,
        startup,
        _sandbox: sandbox,
        _config: dir,
    }
}

/// The stand-in that answered `target`, polling until it is `want` (the federation reader's
/// first health checks may still be under way, and until then its requests go to main).
fn wait_until_served_by(stack: &Stack, target: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(stack.synapse, target);
        let server = if r.status == 200 {
            r.json()["server"].to_string()
        } else {
            r.text()
        };
        if server.trim_matches('"') == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target} answered {} by {server}, wanted {want}; router log:\n{}",
            r.status,
            stack.router.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn routes_to_standins_found_by_container_name() {
    let stack = start_stack();

    let state_ids = "/_matrix/federation/v1/state_ids/!room:example.com?event_id=$event";
    wait_until_served_by(&stack, state_ids, "federation-reader");
    wait_until_served_by(&stack, "/_matrix/client/versions", "main");
    assert_eq!(get(stack.startup, "/synapse_ready").status, 200);
}

#[test]
fn runs_as_uid_65532_on_a_read_only_root() {
    let stack = start_stack();

    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            &images().router
        ]),
        "65532:65532"
    );
    assert_eq!(stack.router.inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(
        stack.router.inspect("{{.HostConfig.ReadonlyRootfs}}"),
        "true"
    );
    // The process itself, as the host's ps sees it.
    let top = docker(&["top", &stack.router.name, "-o", "pid,uid,gid"]);
    let ids: Vec<Vec<&str>> = top
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(1).collect())
        .collect();
    assert_eq!(ids, [["65532", "65532"]], "docker top:\n{top}");
}

#[test]
fn image_exposes_the_charts_ports() {
    let exposed = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.ExposedPorts}}",
        &images().router,
    ]);
    let exposed: serde_json::Value = serde_json::from_str(&exposed).expect("ExposedPorts is JSON");
    let mut ports: Vec<&str> = exposed
        .as_object()
        .expect("a map of ports")
        .keys()
        .map(String::as_str)
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        ["8008/tcp", "8009/tcp", "8010/tcp", "8405/tcp", "8406/tcp"]
    );
}

#[test]
fn docker_stop_ends_it_promptly_and_cleanly() {
    let stack = start_stack();

    let started = Instant::now();
    docker(&["stop", "--time", "10", &stack.router.name]);
    let took = started.elapsed();

    // Exit status 0, not 137: SIGTERM ended it, docker's SIGKILL after 10 s did not.
    assert_eq!(
        stack.router.inspect("{{.State.ExitCode}}"),
        "0",
        "log:\n{}",
        stack.router.logs()
    );
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
}
