//! Matrix Authentication Service: its `config.yaml` (listeners, database, the link to
//! Synapse through the router, signing keys, policy) with the upstream OIDC provider.

use serde::Serialize;

use super::{https, yaml, RenderError, ServiceConfig};
use crate::deployment::{Deployment, TokenAuthMethod};
use crate::secrets;
use crate::stack;

pub const MAS_DB: &str = "matrixauthenticationservice";
pub const MAS_DB_USER: &str = "matrixauthenticationservice_user";

#[derive(Serialize)]
struct MasConfig {
    http: Http,
    database: Database,
    telemetry: Telemetry,
    matrix: Matrix,
    secrets: Secrets,
    policy: Policy,
    experimental: Experimental,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_oauth2: Option<UpstreamOauth2>,
}

#[derive(Serialize)]
struct Http {
    public_base: String,
    listeners: Vec<Listener>,
}

#[derive(Serialize)]
struct Listener {
    name: &'static str,
    binds: Vec<Bind>,
    resources: Vec<Resource>,
}

#[derive(Serialize)]
struct Bind {
    host: &'static str,
    port: u16,
}

#[derive(Serialize)]
struct Resource {
    name: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    undocumented_oauth2_access: bool,
}

fn resources(names: &[&'static str]) -> Vec<Resource> {
    names
        .iter()
        .map(|name| Resource {
            name,
            undocumented_oauth2_access: false,
        })
        .collect()
}

#[derive(Serialize)]
struct Database {
    host: &'static str,
    port: u16,
    username: &'static str,
    password_file: String,
    database: &'static str,
    ssl_mode: &'static str,
}

#[derive(Serialize)]
struct Telemetry {
    metrics: Metrics,
}

#[derive(Serialize)]
struct Metrics {
    exporter: &'static str,
}

#[derive(Serialize)]
struct Matrix {
    kind: &'static str,
    homeserver: String,
    secret_file: String,
    endpoint: String,
}

#[derive(Serialize)]
struct Secrets {
    encryption_file: String,
    keys: Vec<Key>,
}

#[derive(Serialize)]
struct Key {
    key_file: String,
}

#[derive(Serialize)]
struct Policy {
    data: PolicyData,
}

#[derive(Serialize)]
struct PolicyData {
    admin_clients: Vec<String>,
    admin_users: Vec<String>,
    client_registration: ClientRegistration,
}

#[derive(Serialize)]
struct ClientRegistration {
    allow_host_mismatch: bool,
    allow_insecure_uris: bool,
}

#[derive(Serialize)]
struct Experimental {
    session_limit: SessionLimit,
}

#[derive(Serialize)]
struct SessionLimit {
    soft_limit: u32,
    hard_limit: u32,
}

#[derive(Serialize)]
struct UpstreamOauth2 {
    providers: Vec<Provider>,
}

#[derive(Serialize)]
struct Provider {
    id: String,
    issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    human_name: Option<String>,
    client_id: String,
    client_secret_file: String,
    token_endpoint_auth_method: TokenAuthMethod,
    scope: String,
    claims_imports: ClaimsImports,
}

#[derive(Serialize)]
struct ClaimsImports {
    localpart: Import,
    displayname: Import,
    email: Import,
}

#[derive(Serialize)]
struct Import {
    action: &'static str,
    template: &'static str,
}

fn config(d: &Deployment) -> MasConfig {
    let secret = |name: secrets::SecretName| name.container_path();
    let upstream = d.mas.upstream_oidc.as_ref().map(|oidc| UpstreamOauth2 {
        providers: vec![Provider {
            id: oidc.id.as_str().to_owned(),
            issuer: oidc.issuer.to_string(),
            human_name: oidc.human_name.clone(),
            client_id: oidc.client_id.clone(),
            client_secret_file: secret(secrets::UPSTREAM_OIDC_CLIENT_SECRET),
            token_endpoint_auth_method: oidc.token_endpoint_auth_method,
            scope: oidc.scope.clone(),
            // The Matrix ID follows the provider's username; name and address are offered.
            claims_imports: ClaimsImports {
                localpart: Import {
                    action: "require",
                    template: "{{ user.preferred_username }}",
                },
                displayname: Import {
                    action: "suggest",
                    template: "{{ user.name }}",
                },
                email: Import {
                    action: "suggest",
                    template: "{{ user.email }}",
                },
            },
        }],
    });

    let mut web = resources(&["human", "discovery", "oauth", "compat", "assets"]);
    // Lets Element Admin and the admin tooling call GraphQL with an OAuth 2.0 token.
    web.push(Resource {
        name: "graphql",
        undocumented_oauth2_access: true,
    });
    web.extend(resources(&["adminapi"]));

    MasConfig {
        http: Http {
            public_base: https(&d.hosts.mas, true),
            listeners: vec![
                Listener {
                    name: "web",
                    binds: vec![Bind {
                        host: "0.0.0.0",
                        port: stack::MAS_WEB_PORT,
                    }],
                    resources: web,
                },
                Listener {
                    name: "internal",
                    binds: vec![Bind {
                        host: "0.0.0.0",
                        port: stack::MAS_INTERNAL_PORT,
                    }],
                    resources: resources(&["health", "prometheus", "connection-info"]),
                },
            ],
        },
        database: Database {
            host: stack::POSTGRES,
            port: stack::POSTGRES_PORT,
            username: MAS_DB_USER,
            password_file: secret(secrets::POSTGRES_MAS_PASSWORD),
            database: MAS_DB,
            ssl_mode: "prefer",
        },
        telemetry: Telemetry {
            metrics: Metrics {
                exporter: "prometheus",
            },
        },
        // MAS reaches Synapse through the router, as every other client does.
        matrix: Matrix {
            kind: "synapse_modern",
            homeserver: d.server_name.to_string(),
            secret_file: secret(secrets::MAS_SYNAPSE_SHARED_SECRET),
            endpoint: format!("http://{}:{}/", stack::ROUTER, stack::ROUTER_SYNAPSE_PORT),
        },
        secrets: Secrets {
            encryption_file: secret(secrets::MAS_ENCRYPTION_SECRET),
            keys: vec![
                Key {
                    key_file: secret(secrets::MAS_RSA_PRIVATE_KEY),
                },
                Key {
                    key_file: secret(secrets::MAS_ECDSA_PRIME256V1_PRIVATE_KEY),
                },
            ],
        },
        policy: Policy {
            data: PolicyData {
                admin_clients: vec![],
                admin_users: vec![d.mas.admin_username.to_string()],
                client_registration: ClientRegistration {
                    allow_host_mismatch: false,
                    allow_insecure_uris: false,
                },
            },
        },
        experimental: Experimental {
            session_limit: SessionLimit {
                soft_limit: 50,
                hard_limit: 50,
            },
        },
        upstream_oauth2: upstream,
    }
}

pub(super) fn mas(d: &Deployment) -> Result<ServiceConfig, RenderError> {
    Ok(ServiceConfig::new(stack::MAS)
        .file(
            "config.yaml",
            "/conf/config.yaml",
            yaml("MAS config", &config(d))?,
        )
        .env("MAS_CONFIG", "/conf/config.yaml"))
}
