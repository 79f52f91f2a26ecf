//! Checks of the deployment file that one key's type cannot express: keys that must differ,
//! agree or exclude each other. Each problem names its key and what was expected.

use std::collections::BTreeMap;

use super::{Deployment, VaultAuth};
use crate::secret_source::SecretSource;

/// More federation readers than this is a typo, not a plan for one Docker host.
pub const MAX_FEDERATION_READERS: u8 = 16;

/// Every problem found, in file order; empty when the deployment is usable.
pub(super) fn problems(d: &Deployment) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push(format!("{key}: {message}"));

    let hosts = [
        ("hosts.synapse", &d.hosts.synapse),
        ("hosts.mas", &d.hosts.mas),
        ("hosts.element_web", &d.hosts.element_web),
        ("hosts.element_admin", &d.hosts.element_admin),
        ("hosts.matrix_rtc", &d.hosts.matrix_rtc),
    ];
    let mut seen = BTreeMap::new();
    for (key, host) in hosts {
        if let Some(first) = seen.insert(host.as_str(), key) {
            problem(
                key,
                format!("expected a hostname of its own, got {host} (also {first})"),
            );
        }
    }

    if d.synapse.federation_readers > MAX_FEDERATION_READERS {
        problem(
            "synapse.federation_readers",
            format!(
                "expected a number from 0 to {MAX_FEDERATION_READERS}, got {}",
                d.synapse.federation_readers
            ),
        );
    }
    if d.secrets.group == 0 {
        problem(
            "secrets.group",
            "expected a group of its own (e.g. 10010), got 0: every container would join \
             root's group"
                .into(),
        );
    }
    let size = d.synapse.max_upload_size.trim_end_matches(['K', 'M', 'G']);
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        problem(
            "synapse.max_upload_size",
            format!(
                "expected a size like 100M (digits, then K, M or G), got {:?}",
                d.synapse.max_upload_size
            ),
        );
    }

    let mut servers = BTreeMap::new();
    for (i, registry) in d.registries.iter().enumerate() {
        let key = format!("registries[{i}].server");
        let host_part = registry.server.split(':').next().unwrap_or_default();
        let well_formed = !registry.server.is_empty()
            && !registry.server.contains('/')
            && host_part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
        if !well_formed {
            problem(
                &key,
                format!(
                    "expected a registry host like oci.element.io, got {:?}",
                    registry.server
                ),
            );
        }
        if servers.insert(registry.server.as_str(), i).is_some() {
            problem(
                &key,
                format!("expected each registry once, got {} again", registry.server),
            );
        }
    }

    if let Some(oidc) = &d.mas.upstream_oidc {
        if oidc.client_id.trim().is_empty() {
            problem(
                "mas.upstream_oidc.client_id",
                "expected the client id registered at the provider, got an empty string".into(),
            );
        }
        if !oidc.scope.split_whitespace().any(|s| s == "openid") {
            problem(
                "mas.upstream_oidc.scope",
                format!(
                    "expected a scope list containing `openid`, got {:?}",
                    oidc.scope
                ),
            );
        }
    }

    for (key, source) in d.secret_sources() {
        match source {
            SecretSource::Vault(r) => {
                if d.vault.is_none() {
                    problem(
                        &key,
                        "reads from Vault, so expected a `vault` section".into(),
                    );
                }
                if r.path.trim_matches('/').is_empty() {
                    problem(
                        &format!("{key}.vault.path"),
                        "expected a secret path like ess/oidc".into(),
                    );
                }
                if r.key.is_empty() {
                    problem(&format!("{key}.vault.key"), "expected a key name".into());
                }
            }
            SecretSource::Value(v) if v.is_empty() => {
                problem(&key, "expected a secret value, got an empty string".into());
            }
            _ => {}
        }
    }

    if let Some(vault) = &d.vault {
        if vault.mount.trim_matches('/').is_empty() || vault.mount.contains(char::is_whitespace) {
            problem(
                "vault.mount",
                format!(
                    "expected a KV v2 mount name like secret, got {:?}",
                    vault.mount
                ),
            );
        }
        if let VaultAuth::Approle(approle) = &vault.auth {
            for (key, source) in [
                ("role_id", &approle.role_id),
                ("secret_id", &approle.secret_id),
            ] {
                if source.is_vault() {
                    problem(
                        &format!("vault.auth.approle.{key}"),
                        "expected `value`, `env` or `file`: the Vault login cannot come from Vault"
                            .into(),
                    );
                }
            }
        }
    }

    problems
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::deployment::{ConfigError, Deployment};

    const MINIMAL: &str = "
server_name: example.com
hosts:
  synapse: matrix.example.com
  mas: account.example.com
  element_web: chat.example.com
  element_admin: admin.example.com
  matrix_rtc: mrtc.example.com
";

    fn load(extra: &str) -> Result<Deployment, ConfigError> {
        let text = format!("{MINIMAL}{extra}");
        Deployment::from_yaml(&text, Path::new("deployment.yaml"), Path::new("/etc/ess"))
    }

    fn error_of(extra: &str) -> String {
        load(extra).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_file_takes_defaults() {
        let d = load("").unwrap();
        assert_eq!(d.synapse.federation_readers, 0);
        assert_eq!(d.secrets_dir(), Path::new("/etc/ess/secrets"));
        assert_eq!(d.matrix_rtc.livekit_key.as_str(), "matrix-rtc");
        assert!(d.vault.is_none());
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let err = error_of("synapse:\n  federation_readers: many\n");
        assert!(
            err.starts_with("deployment.yaml:10:23: synapse.federation_readers: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_hostname_names_its_key_and_the_expected_form() {
        let text = MINIMAL.replace("chat.example.com", "chat example");
        let err = Deployment::from_yaml(&text, Path::new("d.yaml"), Path::new("/")).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("hosts.element_web: expected a DNS hostname"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let err = error_of("synapse:\n  federation_reader: 2\n");
        assert!(
            err.contains(":10:3: synapse.federation_reader: unknown field `federation_reader`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let err = Deployment::from_yaml(
            "server_name: example.com\n",
            Path::new("d.yaml"),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing field `hosts`"), "{err}");
    }

    #[test]
    fn shared_hostnames_are_refused() {
        let text = MINIMAL.replace("admin.example.com", "chat.example.com");
        let err = Deployment::from_yaml(&text, Path::new("d.yaml"), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hosts.element_admin: expected a hostname of its own"),
            "{err}"
        );
    }

    #[test]
    fn too_many_federation_readers_are_refused() {
        let err = error_of("synapse:\n  federation_readers: 40\n");
        assert!(
            err.contains("synapse.federation_readers: expected a number from 0 to 16, got 40"),
            "{err}"
        );
    }

    #[test]
    fn a_vault_source_needs_a_vault_section() {
        let err = error_of(
            "mas:\n  upstream_oidc:\n    issuer: https://id.example.com/\n    client_id: ess\n    client_secret: {vault: {path: ess/oidc, key: secret}}\n",
        );
        assert!(
            err.contains("mas.upstream_oidc.client_secret: reads from Vault"),
            "{err}"
        );
    }

    #[test]
    fn approle_credentials_cannot_come_from_vault() {
        let err = error_of(
            "vault:\n  auth:\n    method: approle\n    role_id: r\n    secret_id: {vault: {path: a, key: b}}\n",
        );
        assert!(
            err.contains("vault.auth.approle.secret_id: expected `value`, `env` or `file`"),
            "{err}"
        );
    }

    #[test]
    fn an_unpinned_image_override_is_refused() {
        let err = error_of("images:\n  synapse: oci.element.io/synapse\n");
        assert!(
            err.contains("images.synapse: expected an image reference pinned"),
            "{err}"
        );
    }

    #[test]
    fn relative_file_sources_are_anchored_at_the_deployment_file() {
        let d = load(
            "registries:\n  - server: oci.element.io\n    username: me\n    password: {file: pw}\n",
        )
        .unwrap();
        assert_eq!(
            d.registries[0].password,
            crate::secret_source::SecretSource::File("/etc/ess/pw".into())
        );
    }

    #[test]
    fn vault_sources_without_a_mount_take_the_files_default_mount() {
        let d = load("registries:\n  - server: oci.element.io\n    username: me\n    password: {vault: {path: ess/r, key: pw}}\nvault:\n  mount: kv\n").unwrap();
        assert_eq!(
            d.registries[0].password.describe(),
            "Vault mount kv, path ess/r, key pw"
        );
    }
}
