//! The deployment file: the one YAML file an operator writes. Its schema, read once into
//! typed values, and the checks that span several keys.

mod types;
mod validate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

pub use types::{Hostname, HttpUrl, ImageRef, Name, PublicAddress, Ulid};

use crate::images::{Component, ImageOverrides};
use crate::secret_source::SecretSource;

/// A whole deployment, as written in the deployment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The Matrix server name (the part after `:` in user IDs); its apex serves well-known.
    pub server_name: Hostname,
    pub hosts: Hosts,
    #[serde(default)]
    pub edition: Edition,
    #[serde(default)]
    pub images: ImageOverrides,
    #[serde(default)]
    pub registries: Vec<RegistryCredentials>,
    #[serde(default)]
    pub synapse: SynapseSettings,
    #[serde(default)]
    pub mas: MasSettings,
    #[serde(default)]
    pub matrix_rtc: MatrixRtcSettings,
    #[serde(default)]
    pub router: RouterSettings,
    #[serde(default)]
    pub front_proxy: FrontProxy,
    #[serde(default)]
    pub secrets: SecretsSettings,
    #[serde(default)]
    pub vault: Option<VaultSettings>,
}

/// The public hostname of each web-facing component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hosts {
    pub synapse: Hostname,
    pub mas: Hostname,
    pub element_web: Hostname,
    pub element_admin: Hostname,
    pub matrix_rtc: Hostname,
}

/// ESS Community or ESS Pro: chooses the image defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    #[default]
    Community,
    Pro,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Community => "community",
            Edition::Pro => "pro",
        }
    }
}

/// Login for one image registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// Registry host, as it appears at the start of image references (`oci.element.io`).
    pub server: String,
    pub username: SecretSource,
    pub password: SecretSource,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynapseSettings {
    /// How many federation reader processes run beside the main process.
    #[serde(default)]
    pub federation_readers: u8,
    /// Largest upload Synapse accepts, in Synapse's notation (`100M`).
    #[serde(default = "default_max_upload_size")]
    pub max_upload_size: String,
}

impl Default for SynapseSettings {
    fn default() -> Self {
        SynapseSettings {
            federation_readers: 0,
            max_upload_size: default_max_upload_size(),
        }
    }
}

fn default_max_upload_size() -> String {
    "100M".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasSettings {
    /// The first admin account, created with the generated admin password.
    #[serde(default = "default_admin_username")]
    pub admin_username: Name,
    #[serde(default)]
    pub upstream_oidc: Option<UpstreamOidc>,
}

impl Default for MasSettings {
    fn default() -> Self {
        MasSettings {
            admin_username: default_admin_username(),
            upstream_oidc: None,
        }
    }
}

fn default_admin_username() -> Name {
    Name::try_from("admin".to_string()).unwrap_or_else(|_| unreachable!("a valid name"))
}

/// The OpenID Connect provider MAS delegates logins to (Authentik, Keycloak...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOidc {
    pub issuer: HttpUrl,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// The provider's id in MAS's database; keep it once users have logged in.
    #[serde(default = "default_provider_id")]
    pub id: Ulid,
    /// Shown on the login button.
    #[serde(default)]
    pub human_name: Option<String>,
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default)]
    pub token_endpoint_auth_method: TokenAuthMethod,
}

fn default_provider_id() -> Ulid {
    Ulid::try_from("01JSHPZHAXC50QBKH67MH33TNF".to_string())
        .unwrap_or_else(|_| unreachable!("a valid ULID"))
}

fn default_scope() -> String {
    "openid profile email".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRtcSettings {
    /// `stun` or the host's public IP address.
    #[serde(default)]
    pub public_address: PublicAddress,
    /// The LiveKit API key name (not secret).
    #[serde(default = "default_livekit_key")]
    pub livekit_key: Name,
}

fn default_livekit_key() -> Name {
    Name::try_from("matrix-rtc".to_string()).unwrap_or_else(|_| unreachable!("a valid name"))
}

impl Default for MatrixRtcSettings {
    fn default() -> Self {
        MatrixRtcSettings {
            public_address: PublicAddress::Stun,
            livekit_key: default_livekit_key(),
        }
    }
}

impl MatrixRtcSettings {
    pub fn public_ip(&self) -> Option<IpAddr> {
        match self.public_address {
            PublicAddress::Ip(ip) => Some(ip),
            PublicAddress::Stun => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// Networks allowed to reach `/_synapse/admin`; absent means not restricted.
    #[serde(default)]
    pub admin_allow: Option<Vec<IpNet>>,
    /// Peers whose `X-Forwarded-For` the router believes (the front proxy).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
}

/// The Traefik instance in front of the stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontProxy {
    #[serde(default = "default_traefik_network")]
    pub network: Name,
    #[serde(default = "default_entrypoint")]
    pub entrypoint: Name,
    #[serde(default)]
    pub cert_resolver: Option<Name>,
}

impl Default for FrontProxy {
    fn default() -> Self {
        FrontProxy {
            network: default_traefik_network(),
            entrypoint: default_entrypoint(),
            cert_resolver: None,
        }
    }
}

fn default_traefik_network() -> Name {
    Name::try_from("traefik".to_string()).unwrap_or_else(|_| unreachable!("a valid name"))
}

fn default_entrypoint() -> Name {
    Name::try_from("websecure".to_string()).unwrap_or_else(|_| unreachable!("a valid name"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// Directory of the secret files; relative to the deployment file's directory.
    #[serde(default = "default_secrets_dir")]
    pub dir: PathBuf,
    /// Group (numeric id) that owns the files containers mount which hold secrets. Every
    /// container gets it as a supplementary group, so services that run as their own
    /// non-root user can read what is mounted for them, and nothing else on the host can.
    #[serde(default = "default_secrets_group")]
    pub group: u32,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        SecretsSettings {
            dir: default_secrets_dir(),
            group: default_secrets_group(),
        }
    }
}

/// The group of the chart's secret-generating job: one the services' own users are not in.
pub const DEFAULT_SECRETS_GROUP: u32 = 10010;

fn default_secrets_group() -> u32 {
    DEFAULT_SECRETS_GROUP
}

fn default_secrets_dir() -> PathBuf {
    PathBuf::from("secrets")
}

/// The OpenBao/Vault server that `vault` secret sources read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// Absent: `VAULT_ADDR`, then `BAO_ADDR`.
    #[serde(default)]
    pub address: Option<HttpUrl>,
    /// The KV v2 mount used when a source names none.
    #[serde(default = "default_kv_mount")]
    pub mount: String,
    #[serde(default)]
    pub auth: VaultAuth,
}

fn default_kv_mount() -> String {
    "secret".into()
}

/// How `essctl` logs in to Vault: `method: token` or `method: approle`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum VaultAuth {
    /// A token from `VAULT_TOKEN` or `BAO_TOKEN`.
    #[default]
    Token,
    Approle(AppRole),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRole {
    #[serde(default = "default_approle_mount")]
    pub mount: String,
    pub role_id: SecretSource,
    pub secret_id: SecretSource,
}

fn default_approle_mount() -> String {
    "approle".into()
}

/// The deployment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {key}: {message}", at(path, *line))]
    Invalid {
        path: PathBuf,
        line: Option<(usize, usize)>,
        key: String,
        message: String,
    },
    #[error("{path}: {}", problems.join("; "))]
    Rules {
        path: PathBuf,
        problems: Vec<String>,
    },
}

fn at(path: &Path, line: Option<(usize, usize)>) -> String {
    match line {
        Some((line, column)) => format!("{}:{line}:{column}", path.display()),
        None => path.display().to_string(),
    }
}

/// The YAML parser's message without its own (coarser) key path and position, which the
/// error carries separately.
fn clean_message(error: &serde_yaml_ng::Error, key: &str) -> String {
    let mut message = error.to_string();
    if let Some(l) = error.location() {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') && key.starts_with(prefix) => rest.to_owned(),
        _ => message,
    }
}

impl Deployment {
    /// Reads and checks a deployment file. Relative paths in it are made relative to the
    /// file's own directory.
    pub fn load(path: &Path) -> Result<Deployment, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Deployment::from_yaml(&text, path, base)
    }

    /// Parses deployment YAML; `path` names it in errors, `base` anchors relative paths.
    pub fn from_yaml(text: &str, path: &Path, base: &Path) -> Result<Deployment, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let mut deployment: Deployment =
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let key = match e.path().to_string() {
                    p if p == "." => "(top level)".to_owned(),
                    p => p,
                };
                let inner = e.into_inner();
                ConfigError::Invalid {
                    path: path.to_owned(),
                    line: inner.location().map(|l| (l.line(), l.column())),
                    message: clean_message(&inner, &key),
                    key,
                }
            })?;

        let problems = validate::problems(&deployment);
        if !problems.is_empty() {
            return Err(ConfigError::Rules {
                path: path.to_owned(),
                problems,
            });
        }
        deployment.anchor(base);
        Ok(deployment)
    }

    fn anchor(&mut self, base: &Path) {
        if self.secrets.dir.is_relative() {
            self.secrets.dir = base.join(&self.secrets.dir);
        }
        let default_mount = self.vault.as_ref().map(|v| v.mount.clone());
        for source in self.secret_sources_mut() {
            source.anchor(base, default_mount.as_deref());
        }
    }

    fn secret_sources_mut(&mut self) -> Vec<&mut SecretSource> {
        let mut sources = Vec::new();
        for registry in &mut self.registries {
            sources.push(&mut registry.username);
            sources.push(&mut registry.password);
        }
        if let Some(oidc) = &mut self.mas.upstream_oidc {
            sources.push(&mut oidc.client_secret);
        }
        if let Some(VaultSettings {
            auth: VaultAuth::Approle(approle),
            ..
        }) = &mut self.vault
        {
            sources.push(&mut approle.role_id);
            sources.push(&mut approle.secret_id);
        }
        sources
    }

    /// Every secret source of the file, with the key it sits under (the AppRole login
    /// excepted: it is not a secret of the stack).
    pub fn secret_sources(&self) -> Vec<(String, &SecretSource)> {
        let mut sources = Vec::new();
        for (i, registry) in self.registries.iter().enumerate() {
            sources.push((format!("registries[{i}].username"), &registry.username));
            sources.push((format!("registries[{i}].password"), &registry.password));
        }
        if let Some(oidc) = &self.mas.upstream_oidc {
            sources.push((
                "mas.upstream_oidc.client_secret".into(),
                &oidc.client_secret,
            ));
        }
        sources
    }

    /// True when some secret is read from Vault.
    pub fn uses_vault(&self) -> bool {
        self.secret_sources().iter().any(|(_, s)| s.is_vault())
    }

    /// The image of a component: the file's override, else the edition's pinned default.
    pub fn image(&self, component: Component) -> ImageRef {
        self.images
            .get(component)
            .cloned()
            .unwrap_or_else(|| component.default_image(self.edition))
    }

    /// True when Synapse runs workers, which then talk through Redis.
    pub fn has_workers(&self) -> bool {
        self.synapse.federation_readers > 0
    }

    /// The secrets directory, absolute once loaded.
    pub fn secrets_dir(&self) -> &Path {
        &self.secrets.dir
    }
}
