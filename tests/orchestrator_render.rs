//! `essctl render`: every file parses, references only secrets that exist, agrees with the
//! other services' files, and the router's file passes `ess-router check`.

mod orchestrator_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use orchestrator_support::{essctl, one_line_error, stderr, write_deployment};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

const DEPLOYMENT: &str = "\
synapse:
  federation_readers: 2
mas:
  upstream_oidc:
    issuer: https://auth.example.com/
    client_id: ess
    client_secret: {env: ESS_TEST_OIDC_SECRET}
router:
  trusted_proxies: [172.16.0.0/12]
  admin_allow: [10.0.0.0/8, '::1/128']
matrix_rtc:
  public_address: 203.0.113.10
";

/// A deployment with its secrets generated and its configuration rendered.
struct Rendered {
    _dir: tempfile::TempDir,
    config: PathBuf,
    secrets: PathBuf,
    out: PathBuf,
}

impl Rendered {
    fn new(extra: &str) -> Rendered {
        let dir = tempfile::tempdir().unwrap();
        let config = write_deployment(dir.path(), extra);
        let env = [("ESS_TEST_OIDC_SECRET", "oidc-secret")];
        let out = essctl(&["secrets", "--config", config.to_str().unwrap()], &env);
        assert!(out.status.success(), "essctl secrets: {}", stderr(&out));
        let rendered = Rendered {
            secrets: dir.path().join("secrets"),
            out: dir.path().join("rendered"),
            config,
            _dir: dir,
        };
        rendered.render();
        rendered
    }

    fn render(&self) {
        let args = [
            "render",
            "--config",
            self.config.to_str().unwrap(),
            "--out",
            self.out.to_str().unwrap(),
        ];
        let out = essctl(&args, &[]);
        assert!(out.status.success(), "essctl render: {}", stderr(&out));
    }

    fn yaml(&self, file: &str) -> Yaml {
        let text =
            fs::read_to_string(self.out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
    }

    fn json(&self, file: &str) -> Json {
        let text = fs::read_to_string(self.out.join(file)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
    }

    fn env(&self, service: &str) -> BTreeMap<String, String> {
        let text = fs::read_to_string(self.out.join(service).join("env")).unwrap();
        text.lines()
            .map(|line| {
                let (k, v) = line
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{service}/env: {line}"));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn secret(&self, name: &str) -> String {
        fs::read_to_string(self.secrets.join(name)).unwrap()
    }

    /// Every rendered file, relative to the output directory.
    fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, root: &Path, found: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, found);
                } else {
                    found.push(path.strip_prefix(root).unwrap().to_owned());
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.out, &self.out, &mut found);
        found.sort();
        found
    }
}

fn str_at<'a>(value: &'a Yaml, path: &[&str]) -> &'a str {
    let mut v = value;
    for key in path {
        v = match key.parse::<usize>() {
            Ok(index) => &v[index],
            Err(_) => &v[*key],
        };
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string: {v:?}"))
}

/// Every string inside a YAML or JSON value.
fn strings(value: &Json, found: &mut Vec<String>) {
    match value {
        Json::String(s) => found.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|v| strings(v, found)),
        Json::Object(map) => map.values().for_each(|v| strings(v, found)),
        _ => {}
    }
}

#[test]
fn every_rendered_file_parses_and_references_only_existing_files() {
    let r = Rendered::new(DEPLOYMENT);
    let files = r.files();
    let expected_services = [
        "postgres",
        "redis",
        "synapse-main",
        "synapse-federation-reader-0",
        "synapse-federation-reader-1",
        "matrix-authentication-service",
        "router",
        "matrix-rtc-authorisation-service",
        "matrix-rtc-sfu",
        "element-web",
        "element-admin",
    ];
    for service in expected_services {
        assert!(
            r.out.join(service).is_dir(),
            "no folder for {service}: {files:?}"
        );
    }

    for file in &files {
        let service = file
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let name = file.to_str().unwrap();
        let text = fs::read_to_string(r.out.join(file)).unwrap();
        let value: Json = match file.extension().and_then(|e| e.to_str()) {
            Some("yaml") => {
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
            }
            Some("json") => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}")),
            _ => Json::Array(
                text.split(['\n', '=', ' ', '\'', '"'])
                    .map(|s| Json::String(s.into()))
                    .collect(),
            ),
        };
        let mut found = Vec::new();
        strings(&value, &mut found);
        for s in found {
            if let Some(secret) = s.strip_prefix("/secrets/") {
                assert!(
                    r.secrets.join(secret).is_file(),
                    "{name} refers to missing secret {secret}"
                );
            }
            if let Some(conf) = s.strip_prefix("/conf/") {
                assert!(
                    r.out.join(service).join(conf).is_file(),
                    "{name} refers to /conf/{conf}, not rendered"
                );
            }
        }
    }
}

#[test]
fn synapse_and_mas_share_one_secret_and_point_at_each_other() {
    let r = Rendered::new(DEPLOYMENT);
    let synapse = r.yaml("synapse-main/homeserver.yaml");
    let mas = r.yaml("matrix-authentication-service/config.yaml");

    assert_eq!(
        str_at(&synapse, &["matrix_authentication_service", "secret_path"]),
        str_at(&mas, &["matrix", "secret_file"])
    );
    assert_eq!(
        str_at(&mas, &["matrix", "homeserver"]),
        str_at(&synapse, &["server_name"])
    );
    // MAS reaches Synapse through the router's Synapse listener.
    let router = r.yaml("router/router.yaml");
    let router_port = str_at(&router, &["listeners", "synapse"])
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        str_at(&mas, &["matrix", "endpoint"]),
        format!("http://router:{router_port}/")
    );
    // Synapse reaches MAS on its web listener.
    let mas_port = mas["http"]["listeners"][0]["binds"][0]["port"]
        .as_u64()
        .unwrap();
    assert_eq!(mas["http"]["listeners"][0]["name"].as_str(), Some("web"));
    assert_eq!(
        str_at(&synapse, &["matrix_authentication_service", "endpoint"]),
        format!("http://matrix-authentication-service:{mas_port}/")
    );
    assert_eq!(
        str_at(
            &mas,
            &["upstream_oauth2", "providers", "0", "client_secret_file"]
        )
        .strip_prefix("/secrets/")
        .map(|n| r.secret(n)),
        Some("oidc-secret".to_owned())
    );
}

#[test]
fn livekit_and_lk_jwt_agree_on_key_name_and_secret() {
    let r = Rendered::new(DEPLOYMENT);
    let livekit = r.yaml("matrix-rtc-sfu/config.yaml");
    let keys = r.yaml("matrix-rtc-sfu/keys.yaml");
    let lk_jwt = r.env("matrix-rtc-authorisation-service");

    let key_name = &lk_jwt["LIVEKIT_KEY"];
    assert_eq!(str_at(&livekit, &["webhook", "api_key"]), key_name);
    let keys = keys.as_mapping().unwrap();
    assert_eq!(keys.len(), 1);
    let secret_file = lk_jwt["LIVEKIT_SECRET_FROM_FILE"]
        .strip_prefix("/secrets/")
        .unwrap();
    assert_eq!(
        keys[key_name.as_str()].as_str(),
        Some(r.secret(secret_file).as_str())
    );
    assert_eq!(livekit["rtc"]["node_ip"].as_str(), Some("203.0.113.10"));
    assert_eq!(livekit["rtc"]["use_external_ip"].as_bool(), Some(false));
    assert_eq!(livekit["room"]["auto_create"].as_bool(), Some(false));
    assert_eq!(
        str_at(&livekit, &["webhook", "urls", "0"]),
        "http://matrix-rtc-authorisation-service:8080/sfu_webhook"
    );
    assert_eq!(lk_jwt["LIVEKIT_URL"], "wss://mrtc.example.com");
    assert_eq!(
        lk_jwt["LIVEKIT_CS_API_URL_OVERRIDES"],
        "example.com=http://router:8008"
    );

    // LiveKit refuses a key file that others may read.
    let mode = fs::metadata(r.out.join("matrix-rtc-sfu/keys.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "keys.yaml mode {mode:o}");
}

#[test]
fn every_synapse_process_logs_in_to_postgres_with_the_generated_password() {
    let r = Rendered::new(DEPLOYMENT);
    let password = r.secret("POSTGRES_SYNAPSE_PASSWORD");
    let init = fs::read_to_string(r.out.join("postgres/configure-dbs.sh")).unwrap();

    for process in [
        "synapse-main",
        "synapse-federation-reader-0",
        "synapse-federation-reader-1",
    ] {
        let hs = r.yaml(&format!("{process}/homeserver.yaml"));
        let args = &hs["database"]["args"];
        let pgpass = fs::read_to_string(r.out.join(process).join("pgpass")).unwrap();
        let fields = [
            args["host"].as_str().unwrap().to_owned(),
            args["port"].as_u64().unwrap().to_string(),
            args["dbname"].as_str().unwrap().to_owned(),
            args["user"].as_str().unwrap().to_owned(),
            password.clone(),
        ];
        assert_eq!(pgpass, format!("{}\n", fields.join(":")), "{process}");
        assert_eq!(args["passfile"].as_str(), Some("/conf/pgpass"));
        let mode = fs::metadata(r.out.join(process).join("pgpass"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "libpq ignores a pgpass file others can read"
        );
        assert!(
            init.contains(&format!(
                "'{}' '{}' '/secrets/POSTGRES_SYNAPSE_PASSWORD'",
                fields[3], fields[2]
            )),
            "{init}"
        );
    }
    let mas = r.yaml("matrix-authentication-service/config.yaml");
    let mas_secret = str_at(&mas, &["database", "password_file"]);
    assert!(
        init.contains(&format!(
            "'{}' '{}' '{mas_secret}'",
            str_at(&mas, &["database", "username"]),
            str_at(&mas, &["database", "database"])
        )),
        "{init}"
    );
    assert_eq!(
        r.env("postgres")["POSTGRES_PASSWORD_FILE"],
        "/secrets/POSTGRES_ADMIN_PASSWORD"
    );

    let syntax = Command::new("sh")
        .arg("-n")
        .arg(r.out.join("postgres/configure-dbs.sh"))
        .status()
        .unwrap();
    assert!(syntax.success(), "the init script is not valid sh");
}

#[test]
fn federation_readers_are_workers_named_after_their_hostnames_behind_redis() {
    let r = Rendered::new(DEPLOYMENT);
    let main = r.yaml("synapse-main/homeserver.yaml");
    assert_eq!(str_at(&main, &["worker_app"]), "synapse.app.homeserver");
    assert_eq!(
        str_at(&main, &["instance_map", "main", "host"]),
        "synapse-main"
    );
    let replication = main["listeners"].as_sequence().unwrap().iter().any(|l| {
        l["port"].as_u64() == main["instance_map"]["main"]["port"].as_u64()
            && l["resources"][0]["names"][0].as_str() == Some("replication")
    });
    assert!(
        replication,
        "main listens for replication where instance_map says"
    );

    for i in 0..2 {
        let name = format!("synapse-federation-reader-{i}");
        let hs = r.yaml(&format!("{name}/homeserver.yaml"));
        assert_eq!(str_at(&hs, &["worker_name"]), name);
        assert_eq!(str_at(&hs, &["worker_app"]), "synapse.app.generic_worker");
        assert_eq!(str_at(&hs, &["redis", "host"]), "redis");
        assert!(hs["worker_listeners"].is_sequence() && hs["listeners"].is_null());
        assert_eq!(hs["instance_map"], main["instance_map"]);
    }
    let redis = fs::read_to_string(r.out.join("redis/redis.conf")).unwrap();
    assert!(redis.lines().any(|l| l == "port 6379"), "{redis}");
}

#[test]
fn without_federation_readers_there_is_no_redis_and_no_reader_pool() {
    let r = Rendered::new("");
    assert!(!r.out.join("redis").exists());
    assert!(r.yaml("synapse-main/homeserver.yaml")["redis"].is_null());
    let router = r.yaml("router/router.yaml");
    let pools: Vec<&str> = router["synapse"]["pools"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(pools, ["main"]);
}

#[test]
fn the_router_reaches_every_federation_reader_by_one_name_and_scaling_leaves_its_file_alone() {
    let r = Rendered::new(DEPLOYMENT);
    let servers = |r: &Rendered| -> Vec<String> {
        r.yaml("router/router.yaml")["synapse"]["pools"]["federation-reader"]["servers"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(servers(&r), ["synapse-federation-reader:8008"]);
    let before = fs::read(r.out.join("router/router.yaml")).unwrap();

    let text = fs::read_to_string(&r.config)
        .unwrap()
        .replace("federation_readers: 2", "federation_readers: 3");
    fs::write(&r.config, text).unwrap();
    r.render();

    assert_eq!(fs::read(r.out.join("router/router.yaml")).unwrap(), before);
    assert_eq!(
        str_at(
            &r.yaml("synapse-federation-reader-2/homeserver.yaml"),
            &["worker_name"]
        ),
        "synapse-federation-reader-2"
    );
}

#[test]
fn the_router_file_passes_ess_router_check_and_serves_the_well_known_documents() {
    let r = Rendered::new(DEPLOYMENT);
    let router_yaml = r.out.join("router/router.yaml");
    let check = Command::new(ess_suite::cargo_bin("ess-router"))
        .args(["check", "--config", router_yaml.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "ess-router check: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let router = r.yaml("router/router.yaml");
    assert_eq!(
        router["access"]["trusted_proxies"][0].as_str(),
        Some("172.16.0.0/12")
    );
    assert_eq!(router["access"]["admin_allow"][1].as_str(), Some("::1/128"));
    assert_eq!(router["synapse"]["mas"].as_bool(), Some(true));
    assert_eq!(
        str_at(&router, &["well_known", "redirect"]),
        "https://chat.example.com"
    );
    let server_file = str_at(&router, &["well_known", "server", "file"]);
    let client_file = str_at(&router, &["well_known", "client", "file"]);
    let server = r.json(&format!("router/{server_file}"));
    let client = r.json(&format!("router/{client_file}"));
    assert_eq!(server["m.server"], "matrix.example.com:443");
    assert_eq!(
        client["m.homeserver"]["base_url"],
        "https://matrix.example.com"
    );
    assert_eq!(
        client["org.matrix.msc4143.rtc_foci"][0]["livekit_service_url"],
        "https://mrtc.example.com"
    );

    let web = r.json("element-web/config.json");
    assert_eq!(
        web["default_server_config"]["m.homeserver"]["base_url"],
        client["m.homeserver"]["base_url"]
    );
    assert_eq!(
        web["default_server_config"]["m.homeserver"]["server_name"],
        "example.com"
    );
    assert_eq!(r.env("element-admin")["SERVER_NAME"], "example.com");
}

#[test]
fn pro_federation_readers_only_take_the_paths_they_serve() {
    let r = Rendered::new(&format!("edition: pro\n{DEPLOYMENT}"));
    let pool = &r.yaml("router/router.yaml")["synapse"]["pools"]["federation-reader"];
    let paths: Vec<&str> = pool["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "^/_matrix/federation/v1/event/",
            "^/_matrix/federation/v1/state/",
            "^/_matrix/federation/v1/state_ids/"
        ]
    );
    let check = Command::new(ess_suite::cargo_bin("ess-router"))
        .args([
            "check",
            "--config",
            r.out.join("router/router.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "ess-router check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn rendering_again_gives_the_same_bytes() {
    let r = Rendered::new(DEPLOYMENT);
    let read_all = |r: &Rendered| -> Vec<(PathBuf, Vec<u8>)> {
        r.files()
            .into_iter()
            .map(|f| (f.clone(), fs::read(r.out.join(f)).unwrap()))
            .collect()
    };
    let first = read_all(&r);
    r.render();
    assert_eq!(read_all(&r), first);
}

#[test]
fn rendering_before_the_secrets_exist_says_to_run_essctl_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    let out = dir.path().join("rendered");
    let err = one_line_error(&essctl(
        &[
            "render",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(err.contains("is missing"), "{err}");
    assert!(err.contains("run `essctl secrets` first"), "{err}");
    assert!(!out.exists(), "nothing is written");
}
