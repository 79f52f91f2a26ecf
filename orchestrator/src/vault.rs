//! Reading secrets from OpenBao or HashiCorp Vault (KV v2) through `vaultrs`: the address
//! and token from the deployment file or the `VAULT_*`/`BAO_*` variables, token or AppRole
//! login, and one-line errors that name mount, path and key but never a value.

use std::collections::HashMap;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::deployment::{VaultAuth, VaultSettings};
use crate::secret_source::{resolve_local, SourceError};

/// Where `essctl` looks for the server address when the deployment file names none.
pub const ADDRESS_VARIABLES: [&str; 2] = ["VAULT_ADDR", "BAO_ADDR"];
/// Where `essctl` looks for the token of `auth: token`.
pub const TOKEN_VARIABLES: [&str; 2] = ["VAULT_TOKEN", "BAO_TOKEN"];

/// What went wrong reaching Vault or reading one key.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no Vault address: set `vault.address` in the deployment file, VAULT_ADDR or BAO_ADDR"
    )]
    NoAddress,
    #[error("Vault address {0:?} is not an http:// or https:// URL")]
    BadAddress(String),
    #[error("no Vault token: set VAULT_TOKEN or BAO_TOKEN")]
    NoToken,
    #[error("cannot build the Vault client for {address}: {reason}")]
    Client { address: String, reason: String },
    #[error("AppRole {what} for Vault")]
    AppRoleCredential {
        what: &'static str,
        #[source]
        source: Box<SourceError>,
    },
    #[error("AppRole login at mount {mount} on {address} was refused (role_id or secret_id not accepted)")]
    LoginRefused { mount: String, address: String },
    #[error("AppRole login at mount {mount} on {address}: {problem}")]
    Login {
        mount: String,
        address: String,
        problem: Problem,
    },
    #[error(
        "Vault at {}, mount {}, path {}, key {}: {}",
        .0.address, .0.mount, .0.path, .0.key, .0.problem
    )]
    Read(Box<ReadFailure>),
}

/// Which key could not be read, and why.
#[derive(Debug)]
pub struct ReadFailure {
    pub address: String,
    pub mount: String,
    pub path: String,
    pub key: String,
    pub problem: Problem,
}

/// Why a Vault call failed, short enough to share one line with mount, path and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no such path")]
    NoSuchPath,
    #[error("no such key in the secret")]
    NoSuchKey,
    #[error("the key's value is not a string")]
    NotAString,
    #[error("permission denied (token invalid, expired or not allowed to read this path)")]
    Denied,
    #[error("server unreachable ({0})")]
    Unreachable(String),
    #[error("server answered HTTP {0}")]
    Status(u16),
    #[error("unexpected answer ({0})")]
    Unexpected(String),
}

/// A logged-in client and the KV v2 secrets read so far.
pub struct VaultSession {
    client: VaultClient,
    address: String,
    default_mount: String,
    cache: HashMap<(String, String), HashMap<String, serde_json::Value>>,
}

impl VaultSession {
    /// Connects and logs in as the deployment file says. `env` looks up environment
    /// variables (so tests can pass their own).
    pub async fn connect(
        settings: &VaultSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, VaultError> {
        let first_set =
            |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        let address = match &settings.address {
            Some(url) => url.to_string(),
            None => first_set(&ADDRESS_VARIABLES).ok_or(VaultError::NoAddress)?,
        };
        let parsed =
            url::Url::parse(&address).map_err(|_| VaultError::BadAddress(address.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(VaultError::BadAddress(address));
        }
        let address = address.trim_end_matches('/').to_owned();

        let token = match &settings.auth {
            VaultAuth::Token => first_set(&TOKEN_VARIABLES).ok_or(VaultError::NoToken)?,
            VaultAuth::Approle(_) => String::new(),
        };
        let client_error = |reason: String| VaultError::Client {
            address: address.clone(),
            reason,
        };
        let client_settings = VaultClientSettingsBuilder::default()
            .address(&address)
            .token(token)
            .build()
            .map_err(|e| client_error(e.to_string()))?;
        let client = VaultClient::new(client_settings).map_err(|e| client_error(e.to_string()))?;

        let mut session = VaultSession {
            client,
            address,
            default_mount: settings.mount.clone(),
            cache: HashMap::new(),
        };
        if let VaultAuth::Approle(approle) = &settings.auth {
            session
                .approle_login(&approle.mount, &approle.role_id, &approle.secret_id)
                .await?;
        }
        Ok(session)
    }

    async fn approle_login(
        &mut self,
        mount: &str,
        role_id: &crate::secret_source::SecretSource,
        secret_id: &crate::secret_source::SecretSource,
    ) -> Result<(), VaultError> {
        let credential = |what, source| {
            resolve_local(source).map_err(|e| VaultError::AppRoleCredential {
                what,
                source: Box::new(e),
            })
        };
        let role_id = credential("role_id", role_id)?;
        let secret_id = credential("secret_id", secret_id)?;

        match vaultrs::auth::approle::login(&self.client, mount, &role_id, &secret_id).await {
            Ok(auth) => {
                use vaultrs::client::Client as _;
                self.client.set_token(&auth.client_token);
                tracing::debug!(mount, "logged in to Vault with AppRole");
                Ok(())
            }
            Err(ClientError::APIError {
                code: 400 | 401 | 403,
                ..
            }) => Err(VaultError::LoginRefused {
                mount: mount.to_owned(),
                address: self.address.clone(),
            }),
            Err(e) => Err(VaultError::Login {
                mount: mount.to_owned(),
                address: self.address.clone(),
                problem: classify(&e),
            }),
        }
    }

    /// The string at `key` of the KV v2 secret `path` on `mount` (the file's default mount
    /// when `None`). Each secret is fetched once per session.
    pub async fn read(
        &mut self,
        mount: Option<&str>,
        path: &str,
        key: &str,
    ) -> Result<String, VaultError> {
        let mount = mount.unwrap_or(&self.default_mount).to_owned();
        let failed = |problem| {
            VaultError::Read(Box::new(ReadFailure {
                address: self.address.clone(),
                mount: mount.clone(),
                path: path.to_owned(),
                key: key.to_owned(),
                problem,
            }))
        };

        let cache_key = (mount.clone(), path.to_owned());
        if !self.cache.contains_key(&cache_key) {
            let data: HashMap<String, serde_json::Value> =
                vaultrs::kv2::read(&self.client, &mount, path)
                    .await
                    .map_err(|e| failed(classify(&e)))?;
            self.cache.insert(cache_key.clone(), data);
        }
        let data = self
            .cache
            .get(&cache_key)
            .ok_or_else(|| failed(Problem::NoSuchPath))?;

        match data.get(key) {
            None => Err(failed(Problem::NoSuchKey)),
            Some(serde_json::Value::String(value)) => Ok(value.clone()),
            Some(_) => Err(failed(Problem::NotAString)),
        }
    }
}

/// Maps a vaultrs error to a short reason. The server's own error strings are left out: they
/// can be long, and a few servers echo request data back.
fn classify(error: &ClientError) -> Problem {
    match error {
        ClientError::APIError { code: 404, .. } => Problem::NoSuchPath,
        ClientError::APIError {
            code: 403 | 401, ..
        } => Problem::Denied,
        ClientError::APIError { code, .. } => Problem::Status(*code),
        ClientError::RestClientError { .. } => Problem::Unreachable(innermost_cause(error)),
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            Problem::NoSuchPath
        }
        other => Problem::Unexpected(other.to_string()),
    }
}

/// The last error of a source chain ("Connection refused (os error 111)"), which says why a
/// connection failed without repeating the URL.
fn innermost_cause(error: &ClientError) -> String {
    let mut current: &dyn std::error::Error = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
