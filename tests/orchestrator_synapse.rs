//! The rendered `homeserver.yaml` files read by Synapse's own config loader, with the container paths pointed at the test's
//! files: main and every federation reader parse, load the generated signing key and the
//! MAS shared secret, and take their worker names.
//!
//! Needs Synapse installed for `python3` (PyPI `matrix-synapse[url-preview,redis]`); without
//! it the test says so and passes without checking anything.

mod orchestrator_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use orchestrator_support::{essctl, stderr, write_deployment};

fn synapse_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import synapse.config.homeserver"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Loads a config with Synapse's own loader, as the homeserver does at start, and returns
/// the parsed values the test looks at, one `name=value` line each.
const LOAD: &str = r#"
import sys
from synapse.config.homeserver import HomeServerConfig
c = HomeServerConfig.load_config("", ["-c", sys.argv[1]])
print("server_name=" + c.server.server_name)
print("signing_key=" + type(c.key.signing_key[0]).__name__)
print("mas_enabled=" + str(c.mas.enabled))
print("mas_endpoint=" + str(c.mas.endpoint))
print("mas_secret=" + c.mas.secret())
print("redis=" + str(c.redis.redis_enabled))
print("instance_map=" + repr(c.worker.instance_map))
print("worker_app=" + str(c.worker.worker_app))
print("worker_name=" + str(c.worker.worker_name))
print("database=" + c.database.databases[0].config["args"]["passfile"])
"#;

fn load(config: &Path) -> std::collections::BTreeMap<String, String> {
    let out = Command::new("python3")
        .args(["-c", LOAD, config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Synapse refused {}: {}",
        config.display(),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn synapse_loads_every_rendered_homeserver_yaml() {
    if !synapse_installed() {
        // CI installs Synapse (.ci/run): there, a missing Synapse is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "Synapse is not installed for python3 (pip install 'matrix-synapse[url-preview,redis]')"
        );
        eprintln!("skipped: Synapse is not installed for python3 (pip install 'matrix-synapse[url-preview,redis]')");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "synapse:\n  federation_readers: 2\n");
    let out = dir.path().join("rendered");
    for args in [
        vec!["secrets", "--config", config.to_str().unwrap()],
        vec![
            "render",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    ] {
        let run = essctl(&args, &[]);
        assert!(run.status.success(), "essctl {args:?}: {}", stderr(&run));
    }
    let secrets = dir.path().join("secrets");

    for (process, worker) in [
        ("synapse-main", None),
        (
            "synapse-federation-reader-0",
            Some("synapse-federation-reader-0"),
        ),
        (
            "synapse-federation-reader-1",
            Some("synapse-federation-reader-1"),
        ),
    ] {
        // Point the container paths (/secrets, /conf, /media) at this test's files.
        let conf = dir.path().join("conf").join(process);
        fs::create_dir_all(&conf).unwrap();
        for file in ["homeserver.yaml", "log_config.yaml"] {
            fs::copy(out.join(process).join(file), conf.join(file)).unwrap();
        }
        let hs = conf.join("homeserver.yaml");
        let text = fs::read_to_string(&hs)
            .unwrap()
            .replace("/secrets/", &format!("{}/", secrets.display()))
            .replace("/conf/", &format!("{}/", conf.display()))
            .replace(
                "/media/",
                &format!("{}/", dir.path().join("media").display()),
            );
        fs::write(&hs, text).unwrap();

        let parsed = load(&hs);
        assert_eq!(parsed["server_name"], "example.com");
        assert_eq!(parsed["signing_key"], "SigningKey", "{process}");
        assert_eq!(parsed["mas_enabled"], "True");
        assert_eq!(
            parsed["mas_endpoint"],
            "http://matrix-authentication-service:8080/"
        );
        let shared = fs::read_to_string(secrets.join("MAS_SYNAPSE_SHARED_SECRET")).unwrap();
        assert_eq!(
            parsed["mas_secret"], shared,
            "{process} reads the shared secret file"
        );
        assert_eq!(parsed["redis"], "True");
        assert!(
            parsed["instance_map"].contains("host='synapse-main', port=9093"),
            "{process}"
        );
        assert_eq!(
            parsed["database"],
            conf.join("pgpass").display().to_string()
        );
        match worker {
            None => assert_eq!(parsed["worker_name"], "None"),
            Some(name) => {
                assert_eq!(parsed["worker_name"], name);
                assert_eq!(parsed["worker_app"], "synapse.app.generic_worker");
            }
        }
    }
}
