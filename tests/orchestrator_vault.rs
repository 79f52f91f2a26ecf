//! `essctl secrets` against a real OpenBao server (`bao server -dev` on loopback): registry
//! credentials and the OIDC client secret through token and AppRole logins, and the
//! one-line errors for a wrong path, key, token, login or a stopped server.

mod orchestrator_support;

use std::fs;
use std::path::{Path, PathBuf};

use orchestrator_support::{essctl, one_line_error, stderr, stdout, write_deployment, Bao};

const OIDC_SECRET: &str = "oidc-secret-from-openbao";
const REGISTRY_PASSWORD: &str = "registry-password-from-openbao";

fn seeded_bao() -> Bao {
    let bao = Bao::start();
    bao.ok(&[
        "kv",
        "put",
        "-mount=secret",
        "ess/oidc",
        &format!("client_secret={OIDC_SECRET}"),
    ]);
    bao.ok(&[
        "kv",
        "put",
        "-mount=secret",
        "ess/registry",
        "username=ess-pull",
        &format!("password={REGISTRY_PASSWORD}"),
    ]);
    bao
}

/// A deployment reading the OIDC secret and both registry credentials from Vault.
fn deployment(dir: &Path, vault: &str, oidc_path: &str, oidc_key: &str) -> PathBuf {
    write_deployment(
        dir,
        &format!(
            "registries:
  - server: oci.element.io
    username: {{vault: {{path: ess/registry, key: username}}}}
    password: {{vault: {{path: ess/registry, key: password}}}}
mas:
  upstream_oidc:
    issuer: https://auth.example.com/
    client_id: ess
    client_secret: {{vault: {{path: {oidc_path}, key: {oidc_key}}}}}
{vault}"
        ),
    )
}

fn secrets(config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    essctl(&["secrets", "--config", config.to_str().unwrap()], env)
}

fn assert_fetched(dir: &Path, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "essctl secrets failed: {}",
        stderr(output)
    );
    let report = stdout(output);
    let stored = fs::read_to_string(dir.join("secrets/UPSTREAM_OIDC_CLIENT_SECRET")).unwrap();
    assert_eq!(stored, OIDC_SECRET);
    assert!(
        report.contains("written    UPSTREAM_OIDC_CLIENT_SECRET (from Vault mount secret, path ess/oidc, key client_secret)"),
        "{report}"
    );
    assert!(
        report.contains("readable   registry oci.element.io username"),
        "{report}"
    );
    assert!(
        report.contains("readable   registry oci.element.io password"),
        "{report}"
    );
    for value in [OIDC_SECRET, REGISTRY_PASSWORD, "ess-pull"] {
        assert!(
            !report.contains(value),
            "the report shows a value: {report}"
        );
    }
}

#[test]
fn a_token_from_vault_token_reads_the_oidc_secret_and_registry_credentials() {
    let bao = seeded_bao();
    let dir = tempfile::tempdir().unwrap();
    let vault = format!("vault:\n  address: {}\n", bao.address);
    let config = deployment(dir.path(), &vault, "ess/oidc", "client_secret");

    let out = secrets(&config, &[("VAULT_TOKEN", &bao.root_token)]);

    assert_fetched(dir.path(), &out);
}

#[test]
fn bao_addr_and_bao_token_work_when_the_file_names_no_address() {
    let bao = seeded_bao();
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        "vault:\n  auth:\n    method: token\n",
        "ess/oidc",
        "client_secret",
    );

    let out = secrets(
        &config,
        &[("BAO_ADDR", &bao.address), ("BAO_TOKEN", &bao.root_token)],
    );

    assert_fetched(dir.path(), &out);
}

/// Enables AppRole with a role that may read `secret/ess/*`; returns (role_id, secret_id).
fn approle(bao: &Bao) -> (String, String) {
    bao.ok(&["auth", "enable", "approle"]);
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("ess-read.hcl");
    fs::write(
        &policy,
        "path \"secret/data/ess/*\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    bao.ok(&["policy", "write", "ess-read", policy.to_str().unwrap()]);
    bao.ok(&[
        "write",
        "auth/approle/role/essctl",
        "token_policies=ess-read",
        "token_ttl=10m",
    ]);
    let role_id = bao.ok(&["read", "-field=role_id", "auth/approle/role/essctl/role-id"]);
    let secret_id = bao.ok(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/essctl/secret-id",
    ]);
    (role_id, secret_id)
}

fn approle_vault(bao: &Bao) -> String {
    format!(
        "vault:\n  address: {}\n  auth:\n    method: approle\n    role_id: {{env: ESS_TEST_ROLE_ID}}\n    secret_id: {{env: ESS_TEST_SECRET_ID}}\n",
        bao.address
    )
}

#[test]
fn an_approle_login_reads_the_oidc_secret_and_registry_credentials() {
    let bao = seeded_bao();
    let (role_id, secret_id) = approle(&bao);
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        &approle_vault(&bao),
        "ess/oidc",
        "client_secret",
    );

    let out = secrets(
        &config,
        &[
            ("ESS_TEST_ROLE_ID", &role_id),
            ("ESS_TEST_SECRET_ID", &secret_id),
        ],
    );

    assert_fetched(dir.path(), &out);
}

#[test]
fn a_wrong_approle_secret_id_is_a_refused_login() {
    let bao = seeded_bao();
    let (role_id, _) = approle(&bao);
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        &approle_vault(&bao),
        "ess/oidc",
        "client_secret",
    );

    let err = one_line_error(&secrets(
        &config,
        &[
            ("ESS_TEST_ROLE_ID", &role_id),
            ("ESS_TEST_SECRET_ID", "not-the-secret-id"),
        ],
    ));

    assert!(err.contains("AppRole login at mount approle"), "{err}");
    assert!(err.contains("was refused"), "{err}");
    assert!(!err.contains("not-the-secret-id"), "{err}");
}

#[test]
fn a_missing_path_names_mount_path_and_key() {
    let bao = seeded_bao();
    let dir = tempfile::tempdir().unwrap();
    let vault = format!("vault:\n  address: {}\n", bao.address);
    let config = deployment(dir.path(), &vault, "ess/nowhere", "client_secret");

    let err = one_line_error(&secrets(&config, &[("VAULT_TOKEN", &bao.root_token)]));

    assert!(err.contains("mas.upstream_oidc.client_secret"), "{err}");
    assert!(
        err.contains("mount secret, path ess/nowhere, key client_secret: no such path"),
        "{err}"
    );
}

#[test]
fn a_missing_key_names_mount_path_and_key_but_not_the_secret() {
    let bao = seeded_bao();
    let dir = tempfile::tempdir().unwrap();
    let vault = format!("vault:\n  address: {}\n", bao.address);
    let config = deployment(dir.path(), &vault, "ess/oidc", "clientsecret");

    let err = one_line_error(&secrets(&config, &[("VAULT_TOKEN", &bao.root_token)]));

    assert!(
        err.contains("mount secret, path ess/oidc, key clientsecret: no such key"),
        "{err}"
    );
    assert!(!err.contains(OIDC_SECRET), "{err}");
}

#[test]
fn a_wrong_token_is_permission_denied() {
    let bao = seeded_bao();
    let dir = tempfile::tempdir().unwrap();
    let vault = format!("vault:\n  address: {}\n", bao.address);
    let config = deployment(dir.path(), &vault, "ess/oidc", "client_secret");

    let err = one_line_error(&secrets(&config, &[("VAULT_TOKEN", "not-a-valid-token")]));

    assert!(
        err.contains("mount secret, path ess/oidc, key client_secret: permission denied"),
        "{err}"
    );
    assert!(!err.contains("not-a-valid-token"), "{err}");
}

#[test]
fn a_stopped_server_is_unreachable() {
    let mut bao = seeded_bao();
    let token = bao.root_token.clone();
    let dir = tempfile::tempdir().unwrap();
    let vault = format!("vault:\n  address: {}\n", bao.address);
    let config = deployment(dir.path(), &vault, "ess/oidc", "client_secret");
    bao.stop();

    let err = one_line_error(&secrets(&config, &[("VAULT_TOKEN", &token)]));

    assert!(err.contains(&format!("Vault at {}", bao.address)), "{err}");
    assert!(
        err.contains("mount secret, path ess/oidc, key client_secret: server unreachable"),
        "{err}"
    );
}

#[test]
fn no_token_anywhere_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        "vault:\n  address: http://127.0.0.1:9\n",
        "ess/oidc",
        "client_secret",
    );

    let err = one_line_error(&secrets(&config, &[]));

    assert_eq!(
        err,
        "essctl: error: no Vault token: set VAULT_TOKEN or BAO_TOKEN"
    );
}

#[test]
fn no_address_anywhere_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        "vault:\n  mount: secret\n",
        "ess/oidc",
        "client_secret",
    );

    let err = one_line_error(&secrets(&config, &[("VAULT_TOKEN", "t")]));

    assert_eq!(
        err,
        "essctl: error: no Vault address: set `vault.address` in the deployment file, VAULT_ADDR or BAO_ADDR"
    );
}
