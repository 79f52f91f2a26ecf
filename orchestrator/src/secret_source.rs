//! Where a secret value of the deployment file comes from: written in the file, an
//! environment variable, a file, or a key of an OpenBao/Vault KV v2 secret.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::vault::{VaultError, VaultSession};

/// A secret value's origin. In YAML it is either a plain string (the value itself) or a map
/// with exactly one of `value`, `env`, `file` or `vault`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value is written in the deployment file.
    Value(String),
    /// The value is in this environment variable of `essctl`.
    Env(String),
    /// The value is the content of this file (one trailing newline is dropped).
    File(PathBuf),
    /// The value is a key of a KV v2 secret.
    Vault(VaultRef),
}

/// One key of a KV v2 secret. `mount` defaults to the deployment file's `vault.mount`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultRef {
    #[serde(default)]
    pub mount: Option<String>,
    pub path: String,
    pub key: String,
}

impl SecretSource {
    pub fn is_vault(&self) -> bool {
        matches!(self, SecretSource::Vault(_))
    }

    /// A description that never contains the value: `env ESS_X`, `vault secret/ess#key`.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Value(_) => "the deployment file".into(),
            SecretSource::Env(name) => format!("environment variable {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
            SecretSource::Vault(r) => format!(
                "Vault mount {}, path {}, key {}",
                r.mount.as_deref().unwrap_or("(default)"),
                r.path,
                r.key
            ),
        }
    }

    /// Makes relative `file` sources relative to the deployment file's directory, and gives
    /// `vault` sources without a mount the file's default mount.
    pub(crate) fn anchor(&mut self, base: &Path, default_mount: Option<&str>) {
        match self {
            SecretSource::File(path) if path.is_relative() => *path = base.join(&*path),
            SecretSource::Vault(r) if r.mount.is_none() => {
                r.mount = default_mount.map(str::to_owned)
            }
            _ => {}
        }
    }
}

// Debug output of the deployment (logs, test failures) must not show inline values.
impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
            SecretSource::Env(name) => f.debug_tuple("Env").field(name).finish(),
            SecretSource::File(path) => f.debug_tuple("File").field(path).finish(),
            SecretSource::Vault(r) => f.debug_tuple("Vault").field(r).finish(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFields {
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    vault: Option<VaultRef>,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor;

        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = SecretSource;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or a map with one of `value`, `env`, `file`, `vault`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Value(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretSource, A::Error> {
                let fields = SourceFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let mut found = Vec::new();
                if let Some(v) = fields.value {
                    found.push(SecretSource::Value(v));
                }
                if let Some(name) = fields.env {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        return Err(de::Error::custom(format!(
                            "expected an environment variable name in `env`, got {name:?}"
                        )));
                    }
                    found.push(SecretSource::Env(name));
                }
                if let Some(path) = fields.file {
                    found.push(SecretSource::File(path));
                }
                if let Some(r) = fields.vault {
                    found.push(SecretSource::Vault(r));
                }
                match found.len() {
                    1 => Ok(found.remove(0)),
                    _ => Err(de::Error::custom(
                        "expected exactly one of `value`, `env`, `file`, `vault`",
                    )),
                }
            }
        }

        deserializer.deserialize_any(SourceVisitor)
    }
}

/// A secret could not be obtained from its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("environment variable {0} is not set or not valid UTF-8")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("cannot read secret file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a Vault source is used but the deployment file has no `vault` section")]
    NoVault,
    #[error(transparent)]
    Vault(Box<VaultError>),
}

impl From<VaultError> for SourceError {
    fn from(error: VaultError) -> Self {
        SourceError::Vault(Box::new(error))
    }
}

/// Looks secret values up, reusing one Vault login for all of them.
pub struct Resolver<'a> {
    vault: Option<&'a mut VaultSession>,
}

impl<'a> Resolver<'a> {
    pub fn new(vault: Option<&'a mut VaultSession>) -> Self {
        Resolver { vault }
    }

    pub async fn resolve(&mut self, source: &SecretSource) -> Result<String, SourceError> {
        match source {
            SecretSource::Value(value) => Ok(value.clone()),
            SecretSource::Env(name) => read_env(name),
            SecretSource::File(path) => read_file(path),
            SecretSource::Vault(r) => {
                let session = self.vault.as_deref_mut().ok_or(SourceError::NoVault)?;
                Ok(session.read(r.mount.as_deref(), &r.path, &r.key).await?)
            }
        }
    }
}

/// The value of a source that needs no Vault (used for the Vault login itself).
pub fn resolve_local(source: &SecretSource) -> Result<String, SourceError> {
    match source {
        SecretSource::Value(value) => Ok(value.clone()),
        SecretSource::Env(name) => read_env(name),
        SecretSource::File(path) => read_file(path),
        SecretSource::Vault(_) => Err(SourceError::NoVault),
    }
}

fn read_env(name: &str) -> Result<String, SourceError> {
    let value = std::env::var(name).map_err(|_| SourceError::EnvMissing(name.to_owned()))?;
    if value.is_empty() {
        return Err(SourceError::EnvEmpty(name.to_owned()));
    }
    Ok(value)
}

fn read_file(path: &Path) -> Result<String, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::File {
        path: path.to_owned(),
        source,
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SecretSource, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(yaml)
    }

    #[test]
    fn a_plain_string_is_the_value_itself() {
        assert_eq!(
            parse("hunter2").unwrap(),
            SecretSource::Value("hunter2".into())
        );
    }

    #[test]
    fn each_source_kind_parses_from_its_key() {
        assert_eq!(
            parse("{env: ESS_X}").unwrap(),
            SecretSource::Env("ESS_X".into())
        );
        assert_eq!(
            parse("{file: /run/x}").unwrap(),
            SecretSource::File("/run/x".into())
        );
        assert_eq!(
            parse("{vault: {path: ess/oidc, key: secret}}").unwrap(),
            SecretSource::Vault(VaultRef {
                mount: None,
                path: "ess/oidc".into(),
                key: "secret".into()
            })
        );
    }

    #[test]
    fn two_sources_at_once_are_refused() {
        let err = parse("{env: A, value: b}").unwrap_err().to_string();
        assert!(err.contains("exactly one of"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("{environment: A}").unwrap_err().to_string();
        assert!(err.contains("unknown field `environment`"), "{err}");
    }

    #[test]
    fn debug_output_hides_inline_values() {
        let shown = format!("{:?}", SecretSource::Value("hunter2".into()));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn file_sources_drop_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(resolve_local(&SecretSource::File(path)).unwrap(), "abc");
    }
}
