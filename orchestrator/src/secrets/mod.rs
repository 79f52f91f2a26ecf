//! The secrets of a deployment: the generated set (the chart's generate-secrets list), the
//! values fetched from the operator's sources, and the secrets directory holding them.
//! Generated secrets are made only when missing and never rewritten.

mod kinds;
mod store;

use std::fmt;
use std::path::{Path, PathBuf};

pub use kinds::{GenerateError, SecretKind};
pub use store::{StoreError, DIR_MODE, FILE_MODE};

use crate::deployment::Deployment;
use crate::secret_source::{Resolver, SecretSource, SourceError};

/// The file name of one secret in the secrets directory (and under `/secrets/` in the
/// containers that use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(&'static str);

impl SecretName {
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Where the secret is mounted inside a container.
    pub fn container_path(self) -> String {
        format!("/secrets/{}", self.0)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

pub const POSTGRES_ADMIN_PASSWORD: SecretName = SecretName("POSTGRES_ADMIN_PASSWORD");
pub const POSTGRES_SYNAPSE_PASSWORD: SecretName = SecretName("POSTGRES_SYNAPSE_PASSWORD");
pub const POSTGRES_MAS_PASSWORD: SecretName =
    SecretName("POSTGRES_MATRIX_AUTHENTICATION_SERVICE_PASSWORD");
pub const SYNAPSE_SIGNING_KEY: SecretName = SecretName("SYNAPSE_SIGNING_KEY");
pub const SYNAPSE_MACAROON: SecretName = SecretName("SYNAPSE_MACAROON");
pub const SYNAPSE_REGISTRATION_SHARED_SECRET: SecretName =
    SecretName("SYNAPSE_REGISTRATION_SHARED_SECRET");
pub const MAS_SYNAPSE_SHARED_SECRET: SecretName = SecretName("MAS_SYNAPSE_SHARED_SECRET");
pub const MAS_ENCRYPTION_SECRET: SecretName = SecretName("MAS_ENCRYPTION_SECRET");
pub const MAS_RSA_PRIVATE_KEY: SecretName = SecretName("MAS_RSA_PRIVATE_KEY");
pub const MAS_ECDSA_PRIME256V1_PRIVATE_KEY: SecretName =
    SecretName("MAS_ECDSA_PRIME256V1_PRIVATE_KEY");
pub const ELEMENT_CALL_LIVEKIT_SECRET: SecretName = SecretName("ELEMENT_CALL_LIVEKIT_SECRET");
pub const ADMIN_USER_PASSWORD: SecretName = SecretName("ADMIN_USER_PASSWORD");
/// Not generated: the upstream OIDC client secret, copied from its source.
pub const UPSTREAM_OIDC_CLIENT_SECRET: SecretName = SecretName("UPSTREAM_OIDC_CLIENT_SECRET");

/// Every generated secret, its format and who reads it.
pub const GENERATED: [(SecretName, SecretKind, &str); 12] = [
    (
        POSTGRES_ADMIN_PASSWORD,
        SecretKind::Rand32,
        "postgres superuser",
    ),
    (
        POSTGRES_SYNAPSE_PASSWORD,
        SecretKind::Rand32,
        "postgres role synapse_user",
    ),
    (
        POSTGRES_MAS_PASSWORD,
        SecretKind::Rand32,
        "postgres role matrixauthenticationservice_user",
    ),
    (
        SYNAPSE_SIGNING_KEY,
        SecretKind::SynapseSigningKey,
        "synapse signing_key_path",
    ),
    (
        SYNAPSE_MACAROON,
        SecretKind::Rand32,
        "synapse macaroon_secret_key_path",
    ),
    (
        SYNAPSE_REGISTRATION_SHARED_SECRET,
        SecretKind::Rand32,
        "synapse registration_shared_secret_path",
    ),
    (
        MAS_SYNAPSE_SHARED_SECRET,
        SecretKind::Rand32,
        "synapse and MAS shared secret",
    ),
    (
        MAS_ENCRYPTION_SECRET,
        SecretKind::Hex32,
        "MAS secrets.encryption_file",
    ),
    (
        MAS_RSA_PRIVATE_KEY,
        SecretKind::Rsa4096,
        "MAS signing key (RSA)",
    ),
    (
        MAS_ECDSA_PRIME256V1_PRIVATE_KEY,
        SecretKind::EcdsaP256,
        "MAS signing key (P-256)",
    ),
    (
        ELEMENT_CALL_LIVEKIT_SECRET,
        SecretKind::Rand32,
        "LiveKit API secret, lk-jwt",
    ),
    (
        ADMIN_USER_PASSWORD,
        SecretKind::Rand32,
        "the first admin account",
    ),
];

/// What `essctl secrets` did with one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Missing, so generated now.
    Generated,
    /// Present and well-formed; left untouched.
    Kept,
    /// Fetched from its source and written, new or changed.
    Written { from: String },
    /// Fetched from its source; the file already held that value.
    Unchanged { from: String },
    /// Fetched to prove it is readable; not stored on disk.
    Readable { from: String },
}

/// One line of the report: a secret (or credential) and what happened to it. Never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub name: String,
    pub outcome: Outcome,
}

impl fmt::Display for ReportLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Generated => write!(f, "generated  {}", self.name),
            Outcome::Kept => write!(f, "kept       {}", self.name),
            Outcome::Written { from } => write!(f, "written    {} (from {from})", self.name),
            Outcome::Unchanged { from } => write!(f, "unchanged  {} (from {from})", self.name),
            Outcome::Readable { from } => write!(f, "readable   {} (from {from})", self.name),
        }
    }
}

/// The secrets could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path} is malformed: {reason}; move it away to have a new one generated")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot generate {name}")]
    Generate {
        name: SecretName,
        #[source]
        source: GenerateError,
    },
    #[error("{key}")]
    Source {
        key: String,
        #[source]
        source: SourceError,
    },
}

/// Generates every missing secret of [`GENERATED`] in `dir`. Existing files are checked
/// first, all of them, so a malformed one stops the run before anything is written.
pub fn ensure_generated(dir: &Path) -> Result<Vec<ReportLine>, SecretsError> {
    store::prepare_dir(dir)?;

    let mut missing = Vec::new();
    let mut report = Vec::new();
    for (name, kind, _) in GENERATED {
        let path = dir.join(name.as_str());
        match store::read_existing(&path)? {
            Some(contents) => {
                kind.check(&contents)
                    .map_err(|reason| SecretsError::Malformed { path, reason })?;
                report.push(ReportLine {
                    name: name.to_string(),
                    outcome: Outcome::Kept,
                });
            }
            None => missing.push((name, kind, path)),
        }
    }

    for (name, kind, path) in missing {
        let contents = kind
            .generate()
            .map_err(|source| SecretsError::Generate { name, source })?;
        store::create_new(&path, &contents)?;
        tracing::info!(secret = %name, "generated");
        report.push(ReportLine {
            name: name.to_string(),
            outcome: Outcome::Generated,
        });
    }

    report.sort_by_key(|line| {
        GENERATED
            .iter()
            .position(|(n, _, _)| n.as_str() == line.name)
    });
    Ok(report)
}

/// Fetches the deployment's external secrets: the upstream OIDC client secret is stored in
/// the secrets directory (MAS reads it from a file); registry credentials are only proven
/// readable, the Docker step fetches them again when it pulls.
pub async fn fetch_external(
    deployment: &Deployment,
    resolver: &mut Resolver<'_>,
) -> Result<Vec<ReportLine>, SecretsError> {
    let dir = deployment.secrets_dir();
    store::prepare_dir(dir)?;
    let mut report = Vec::new();

    if let Some(oidc) = &deployment.mas.upstream_oidc {
        let key = "mas.upstream_oidc.client_secret";
        let value = resolve(resolver, key, &oidc.client_secret).await?;
        let path = dir.join(UPSTREAM_OIDC_CLIENT_SECRET.as_str());
        let from = oidc.client_secret.describe();
        let outcome = if store::read_existing(&path)?.as_deref() == Some(value.as_bytes()) {
            Outcome::Unchanged { from }
        } else {
            store::replace(&path, value.as_bytes())?;
            Outcome::Written { from }
        };
        report.push(ReportLine {
            name: UPSTREAM_OIDC_CLIENT_SECRET.to_string(),
            outcome,
        });
    }

    for (i, registry) in deployment.registries.iter().enumerate() {
        for (field, source) in [
            ("username", &registry.username),
            ("password", &registry.password),
        ] {
            resolve(resolver, &format!("registries[{i}].{field}"), source).await?;
            report.push(ReportLine {
                name: format!("registry {} {field}", registry.server),
                outcome: Outcome::Readable {
                    from: source.describe(),
                },
            });
        }
    }
    Ok(report)
}

async fn resolve(
    resolver: &mut Resolver<'_>,
    key: &str,
    source: &SecretSource,
) -> Result<String, SecretsError> {
    resolver
        .resolve(source)
        .await
        .map_err(|source| SecretsError::Source {
            key: key.to_owned(),
            source,
        })
}

/// Reads a secret that `essctl secrets` must already have written (for rendering files that
/// embed it).
pub fn read(dir: &Path, name: SecretName) -> Result<Vec<u8>, MissingSecret> {
    let path = dir.join(name.as_str());
    match store::read_existing(&path) {
        Ok(Some(contents)) => Ok(contents),
        Ok(None) => Err(MissingSecret::Absent { name, path }),
        Err(source) => Err(MissingSecret::Unusable { source }),
    }
}

/// A secret needed for rendering is not there.
#[derive(Debug, thiserror::Error)]
pub enum MissingSecret {
    #[error("secret {name} is missing ({path}); run `essctl secrets` first")]
    Absent { name: SecretName, path: PathBuf },
    #[error(transparent)]
    Unusable { source: StoreError },
}
