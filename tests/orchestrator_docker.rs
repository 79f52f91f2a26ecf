//! `essctl plan/up/scale/down` against a real Docker daemon, with the router image and the
//! `ess-standin` stand-in image (a TEST STAND-IN answering health and identity on each
//! service's ports) in place of every other service. Nothing is pulled. Every project,
//! network and volume is named `esst-<pid>-<n>` and removed when the test ends.

mod orchestrator_support;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use ess_suite::docker::{docker, images};
use orchestrator_support::stack::Stack;
use orchestrator_support::{essctl, stderr, stdout};

/// The servers that answered `requests` different federation state_ids requests sent to the
/// router's published port, waiting up to `timeout` for all of `want` to show up.
fn federation_servers(stack: &Stack, want: usize, timeout: Duration) -> BTreeSet<String> {
    let port = docker(&["port", &stack.container("router"), "8008/tcp"]);
    let addr = port.lines().next().unwrap().trim().to_owned();
    let started = Instant::now();
    loop {
        let mut seen = BTreeSet::new();
        for i in 0..60 {
            let path =
                format!("/_matrix/federation/v1/state_ids/%21room{i}:example.com?event_id=%24e");
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            if let Ok(answer) = ess_suite::http::try_request(addr, "GET", &path, &[], b"") {
                if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&answer.body) {
                    if let Some(server) = json["server"].as_str() {
                        seen.insert(server.to_owned());
                    }
                }
            }
        }
        if seen.len() >= want || started.elapsed() > timeout {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn readers(n: u8) -> BTreeSet<String> {
    (0..n)
        .map(|i| format!("synapse-federation-reader-{i}"))
        .collect()
}

#[test]
fn up_converges_scales_through_discovery_and_recreates_exactly_what_changed() {
    let stack = Stack::new(None);
    stack.write(3, "");
    let secrets = essctl(&["secrets", "--config", &stack.config()], &[]);
    assert!(secrets.status.success(), "{}", stderr(&secrets));

    // Nothing yet: the plan creates everything and says so with exit status 2.
    let plan = stack.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    assert!(stdout(&plan).contains("router (") && stdout(&plan).contains(": create"));

    let up = stack.ok(&["up", "--pull", "never"]);
    assert!(up.contains("synapse-federation-reader-2"), "{up}");
    let first = stack.containers();
    assert_eq!(first.len(), 12, "{first:?}");

    // Each service runs as the chart's user with the secrets group; the secret files are the
    // group's (0440), a passfile its service user's alone (0600, as libpq wants). The
    // stand-ins above started only because they could read and write what they needed.
    let user = docker(&[
        "inspect",
        "--format",
        "{{.Config.User}} {{.HostConfig.GroupAdd}}",
        &stack.container("synapse-main"),
    ]);
    assert_eq!(user, "10091:10091 [10010]");
    let secret = stack.dir.path().join("secrets/SYNAPSE_SIGNING_KEY");
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o440, 10010));
    let pgpass = stack
        .dir
        .path()
        .join(format!("rendered/{}/synapse-main/pgpass", stack.project));
    let meta = std::fs::metadata(&pgpass).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, 10091));

    // verify: one line per check. The stand-ins have no mas-cli and no client versions, so
    // those two fail (and so does the run); the router's own checks and well-known pass.
    let verify = stack.run(&["verify"]);
    assert!(!verify.status.success());
    let lines = stdout(&verify);
    for ok in [
        "router readiness",
        "router metrics",
        "well-known server",
        "well-known client",
    ] {
        assert!(lines.contains(&format!("ok    {ok}: ")), "{lines}");
    }
    assert!(lines.contains("FAIL  mas-cli doctor: "), "{lines}");
    assert_eq!(lines.lines().count(), 6, "{lines}");

    // The compose export lists every service, the one-off migration and the one-offs that
    // give the volumes to their services' users.
    let compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&stack.ok(&["export", "compose"])).unwrap();
    let services: Vec<&str> = compose["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(
        services.iter().filter(|s| !s.ends_with("-volumes")).count(),
        13,
        "{services:?}"
    );
    assert!(services.contains(&"postgres-volumes"), "{services:?}");

    // Federation reads reach every reader through the router's published port.
    assert_eq!(
        federation_servers(&stack, 3, Duration::from_secs(30)),
        readers(3)
    );

    // A second run changes nothing.
    let plan = stack.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    let again = stack.ok(&["up", "--pull", "never"]);
    assert!(again.starts_with("unchanged"), "{again}");
    assert_eq!(stack.containers(), first);

    // Five readers: two new containers, the router stays and finds them through DNS.
    let router = stack.containers()[&stack.container("router")].clone();
    let scaled = stack.ok(&["scale", "federation-reader=5", "--pull", "never"]);
    assert_eq!(scaled.lines().count(), 2, "{scaled}");
    assert_eq!(stack.containers()[&stack.container("router")], router);
    assert_eq!(
        federation_servers(&stack, 5, Duration::from_secs(30)),
        readers(5)
    );

    // A setting of Synapse's: exactly the Synapse processes are recreated, for their
    // configuration.
    stack.write(5, "  max_upload_size: 200M\n");
    let before = stack.containers();
    let plan = stack.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2));
    let plan = stdout(&plan);
    let recreated: BTreeSet<&str> = plan
        .lines()
        .filter(|l| l.contains("recreate (configuration)"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut synapse: BTreeSet<String> = readers(5);
    synapse.insert("synapse-main".into());
    assert_eq!(
        recreated,
        synapse.iter().map(String::as_str).collect(),
        "{plan}"
    );
    assert_eq!(
        plan.lines().filter(|l| l.ends_with(": unchanged")).count(),
        8,
        "{plan}"
    );
    stack.ok(&["up", "--pull", "never"]);
    let after = stack.containers();
    for (name, id) in &before {
        let service = name.strip_prefix(&format!("{}-", stack.project)).unwrap();
        assert_eq!(after[name] != *id, synapse.contains(service), "{name}");
    }

    // Fewer readers remove the extra containers.
    stack.write(2, "  max_upload_size: 200M\n");
    let shrunk = stack.ok(&["up", "--pull", "never"]);
    assert!(
        shrunk.contains("synapse-federation-reader-4") && shrunk.contains("removed"),
        "{shrunk}"
    );
    assert_eq!(stack.containers().len(), 11);

    // A container of someone else's on the project network: down removes the stack's own
    // containers, names the visitor that keeps the network, and finishes once it is gone.
    let network = format!("{}_default", stack.project);
    let visitor = format!("{}-visitor", stack.project);
    docker(&[
        "run",
        "-d",
        "--name",
        &visitor,
        "--network",
        &network,
        &images().standin,
        "--name",
        "visitor",
        "--listen",
        "0.0.0.0:8080",
    ]);
    let refused = essctl(&["down", "--project", &stack.project], &[]);
    docker(&["rm", "-f", &visitor]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains(&format!(
            "remove network {network}: still used by {visitor}, not of project {}",
            stack.project
        )),
        "{}",
        stderr(&refused)
    );
    assert!(stack.containers().is_empty());

    // down keeps the volumes; down --volumes removes them.
    assert_eq!(stack.volumes().len(), 2);
    let out = essctl(&["down", "--project", &stack.project], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("network {network}: ")),
        "{}",
        stdout(&out)
    );
    assert!(stack.networks().iter().all(|n| *n != network) || stdout(&out).contains(": kept: "));
    assert_eq!(stack.volumes().len(), 2);
    let out = essctl(&["down", "--volumes", "--project", &stack.project], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stack.volumes().is_empty());
}

#[test]
fn a_service_that_never_becomes_ready_fails_the_run_with_its_probe_and_log() {
    // element_admin waits on a port nobody listens on.
    let stack = Stack::new(Some((
        "element_admin: {command: [--name, \"{name}\", --listen, \"0.0.0.0:8080\"]}",
        "element_admin: {command: [--name, \"{name}\", --listen, \"0.0.0.0:8080\"], readiness: {http: {port: 9999, path: /health}}}",
    )));
    stack.write(0, "");
    let out = stack.run(&["up", "--pull", "never", "--timeout", "3"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("essctl: error:"))
        .unwrap_or(&err);
    assert!(last.contains("element-admin did not become ready"), "{err}");
    assert!(last.contains("GET :9999/health"), "{err}");
    assert!(err.contains("listening on"), "the log tail: {err}");
}

#[test]
fn pull_never_refuses_an_image_that_is_not_present() {
    let stack = Stack::new(None);
    let path = stack.write(0, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "element_admin: ess-standin:test",
        "element_admin: esst-absent/none:1",
    );
    std::fs::write(&path, text).unwrap();
    let out = stack.run(&["up", "--pull", "never"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("esst-absent/none:1 is not present locally"),
        "{}",
        stderr(&out)
    );
    assert!(stack.containers().is_empty());
}

#[test]
fn an_interrupted_up_is_finished_by_the_next_one() {
    let stack = Stack::new(None);
    stack.write(2, "");
    let secrets = essctl(&["secrets", "--config", &stack.config()], &[]);
    assert!(secrets.status.success(), "{}", stderr(&secrets));

    let config = stack.config();
    let overrides = stack.overrides.display().to_string();
    let child = std::process::Command::new(ess_suite::cargo_bin("essctl"))
        .args([
            "up",
            "--pull",
            "never",
            "--config",
            &config,
            "--project",
            &stack.project,
        ])
        .args(["--overrides", &overrides])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first containers exist, before the run can finish.
    let started = Instant::now();
    while stack.containers().len() < 2 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "up finished before the interrupt: {err}"
    );
    assert!(err.contains("interrupted; run `essctl up` again"), "{err}");
    assert!(stack.containers().len() < 11);

    stack.ok(&["up", "--pull", "never"]);
    assert_eq!(stack.containers().len(), 11);
    assert_eq!(stack.run(&["plan"]).status.code(), Some(0));
}
