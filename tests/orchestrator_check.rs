//! `essctl check`: the example deployment file is valid, and a mistake is reported on one
//! line naming the file, the position, the key and what was expected.

mod orchestrator_support;

use std::path::Path;

use orchestrator_support::{essctl, one_line_error, stdout, HOSTS};

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/deployment.example.yaml")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_example_deployment_file_is_valid() {
    let out = essctl(&["check", "--config", &example()], &[]);
    assert!(
        out.status.success(),
        "{}",
        orchestrator_support::stderr(&out)
    );
    assert!(stdout(&out).contains(
        "ok: community edition, server name example.com, 2 federation reader(s), 11 services"
    ));
}

fn check_error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.yaml");
    std::fs::write(&path, yaml).unwrap();
    let err = one_line_error(&essctl(&["check", "--config", path.to_str().unwrap()], &[]));
    let shown = path.display().to_string();
    assert!(err.contains(&shown), "the error names the file: {err}");
    err
}

#[test]
fn a_wrong_value_is_reported_with_its_key_and_the_expected_form() {
    let err = check_error(&format!(
        "{HOSTS}matrix_rtc:\n  public_address: somewhere\n"
    ));
    assert!(
        err.ends_with(
            ":9:3: matrix_rtc.public_address: expected `stun` or an IP address like \
             203.0.113.10, got \"somewhere\""
        ),
        "{err}"
    );
}

#[test]
fn a_misspelt_key_is_reported_with_the_keys_expected_there() {
    let err = check_error(&format!("{HOSTS}edition: community\nregistry: []\n"));
    assert!(
        err.contains("registry: unknown field `registry`, expected one of"),
        "{err}"
    );
    assert!(err.contains("`registries`"), "{err}");
}

#[test]
fn a_missing_host_is_reported_by_name() {
    let err = check_error(&HOSTS.replace("  element_admin: admin.example.com\n", ""));
    assert!(
        err.contains("hosts: missing field `element_admin`"),
        "{err}"
    );
}

#[test]
fn every_rule_broken_at_once_is_listed() {
    let err = check_error(&format!(
        "{}synapse:\n  federation_readers: 17\n",
        HOSTS.replace("mrtc.example.com", "chat.example.com")
    ));
    assert!(
        err.contains("hosts.matrix_rtc: expected a hostname of its own"),
        "{err}"
    );
    assert!(
        err.contains("synapse.federation_readers: expected a number from 0 to 16"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_a_one_line_error() {
    let err = one_line_error(&essctl(
        &["check", "--config", "/nonexistent/deployment.yaml"],
        &[],
    ));
    assert_eq!(
        err,
        "essctl: error: cannot read /nonexistent/deployment.yaml: No such file or directory (os error 2)"
    );
}
