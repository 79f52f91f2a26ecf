//! The desired state without a daemon: hashes move only with what they cover, the router
//! finds readers by alias, Traefik labels, and the compose export.

use std::path::Path;

use super::overrides::Overrides;
use super::prepare::{prepare, Project, SecretsStep};
use super::spec::{ContainerSpec, Desired};
use crate::stack;

fn deployment(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("deployment.yaml");
    std::fs::write(
        &path,
        format!(
            "server_name: example.com\nhosts:\n  synapse: matrix.example.com\n  mas: account.example.com\n  \
             element_web: chat.example.com\n  element_admin: admin.example.com\n  matrix_rtc: mrtc.example.com\n\
             front_proxy:\n  cert_resolver: le\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn desired(dir: &Path, extra: &str) -> Desired {
    let path = deployment(dir, extra);
    let project = Project::new("t", &path, None, None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(prepare(&project, SecretsStep::Ensure))
        .unwrap()
        .desired
}

fn spec<'a>(d: &'a Desired, service: &str) -> &'a ContainerSpec {
    d.containers.iter().find(|s| s.service == service).unwrap()
}

#[test]
fn a_synapse_setting_moves_only_the_synapse_configuration_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let before = desired(dir.path(), "synapse:\n  federation_readers: 2\n");
    let after = desired(
        dir.path(),
        "synapse:\n  federation_readers: 2\n  max_upload_size: 5M\n",
    );
    for (a, b) in before.containers.iter().zip(&after.containers) {
        let synapse = a.service.starts_with("synapse-");
        assert_eq!(
            a.hashes.configuration != b.hashes.configuration,
            synapse,
            "{}",
            a.service
        );
        assert_eq!(a.hashes.secrets, b.hashes.secrets, "{}", a.service);
        assert_eq!(a.hashes.settings, b.hashes.settings, "{}", a.service);
    }
}

#[test]
fn more_readers_leave_the_router_and_main_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let two = desired(dir.path(), "synapse:\n  federation_readers: 2\n");
    let five = desired(dir.path(), "synapse:\n  federation_readers: 5\n");
    for name in [stack::ROUTER, stack::SYNAPSE_MAIN, stack::MAS] {
        assert_eq!(spec(&two, name), spec(&five, name), "{name}");
    }
    assert_eq!(five.containers.len(), two.containers.len() + 3);
    let reader = spec(&five, "synapse-federation-reader-4");
    assert!(reader
        .aliases
        .contains(&"synapse-federation-reader".to_string()));
}

#[test]
fn a_changed_secret_moves_the_secret_hash_of_its_users_only() {
    let dir = tempfile::tempdir().unwrap();
    let before = desired(dir.path(), "");
    let secret = dir.path().join("secrets/ELEMENT_CALL_LIVEKIT_SECRET");
    std::fs::remove_file(&secret).unwrap();
    let after = desired(dir.path(), "");
    for (a, b) in before.containers.iter().zip(&after.containers) {
        let uses = a.service == stack::LK_JWT;
        assert_eq!(a.hashes.secrets != b.hashes.secrets, uses, "{}", a.service);
    }
    // LiveKit has the secret inside its rendered keys file: its configuration moves.
    assert_ne!(
        spec(&before, stack::LIVEKIT).hashes.configuration,
        spec(&after, stack::LIVEKIT).hashes.configuration
    );
}

#[test]
fn public_services_carry_traefik_labels_for_their_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let d = desired(dir.path(), "");
    let router = spec(&d, stack::ROUTER);
    assert!(router.public);
    let rules: Vec<&String> = router
        .labels
        .iter()
        .filter(|(k, _)| k.ends_with(".rule"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        rules.contains(&&"Host(`matrix.example.com`)".to_string()),
        "{rules:?}"
    );
    assert!(
        rules.contains(&&"Host(`example.com`) && (PathPrefix(`/.well-known/matrix`))".to_string())
    );
    assert_eq!(
        router.labels["traefik.http.routers.t-router-0.tls.certresolver"],
        "le"
    );
    assert!(!spec(&d, stack::POSTGRES).public);
    assert_eq!(spec(&d, stack::LIVEKIT).publish.len(), 2);
}

#[test]
fn overrides_replace_command_probe_and_ports_by_service_or_component() {
    let overrides: Overrides = serde_yaml_ng::from_str(
        "services:\n  federation_reader: {command: [--name, \"{name}\"], readiness: {tcp: {port: 1}}}\n  \
         synapse-federation-reader-1: {publish: []}\n",
    )
    .unwrap();
    let by_component = overrides.get(
        "synapse-federation-reader-0",
        Some(crate::images::Component::FederationReader),
    );
    assert!(by_component.unwrap().command.is_some());
    let by_name = overrides.get(
        "synapse-federation-reader-1",
        Some(crate::images::Component::FederationReader),
    );
    assert!(by_name.unwrap().command.is_none());
    assert_eq!(
        super::overrides::substitute(&["{name}".into()], "x"),
        vec!["x".to_string()]
    );
}

#[test]
fn the_compose_export_has_every_service_and_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let d = desired(dir.path(), "synapse:\n  federation_readers: 1\n");
    let text = super::compose::export(&d).unwrap();
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let services = yaml["services"].as_mapping().unwrap();
    let with_volumes: Vec<&str> = d
        .containers
        .iter()
        .filter(|c| !c.volumes.is_empty())
        .map(|c| c.service.as_str())
        .collect();
    assert!(with_volumes.contains(&stack::POSTGRES), "{with_volumes:?}");
    assert_eq!(services.len(), d.containers.len() + 1 + with_volumes.len());
    // Each service with volumes waits for the one-off that gives them to its user.
    for service in with_volumes {
        let owner = &yaml["services"][format!("{service}-volumes").as_str()];
        assert_eq!(owner["user"].as_str(), Some("0:0"), "{text}");
        assert_eq!(
            owner["entrypoint"][0].as_str(),
            Some("/bin/chown"),
            "{text}"
        );
        assert_eq!(
            owner["entrypoint"][1].as_str(),
            Some(yaml["services"][service]["user"].as_str().unwrap())
        );
        assert_eq!(
            yaml["services"][service]["depends_on"][format!("{service}-volumes").as_str()]
                ["condition"]
                .as_str(),
            Some("service_completed_successfully")
        );
    }
    let mas = &yaml["services"][stack::MAS];
    assert_eq!(
        mas["depends_on"]["mas-migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        yaml["services"][stack::LIVEKIT]["ports"][1].as_str(),
        Some("30002:30002/udp")
    );
    assert_eq!(yaml["networks"]["front"]["external"].as_bool(), Some(true));
}
