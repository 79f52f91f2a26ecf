//! The containers a deployment consists of: name (also its hostname), image, the secrets it
//! mounts, its ports, readiness probe, public routes and start stage. Rendering and the
//! Docker steps both work from this list.

use crate::deployment::{Deployment, Hostname, ImageRef};
use crate::images::Component;
use crate::secrets::{self, SecretName};

/// The network alias every federation reader answers to: the router's pool is this one DNS
/// name, so readers join and leave it through discovery, without a router restart.
pub const FEDERATION_READERS_ALIAS: &str = "synapse-federation-reader";
pub const POSTGRES: &str = "postgres";
pub const REDIS: &str = "redis";
pub const SYNAPSE_MAIN: &str = "synapse-main";
pub const MAS: &str = "matrix-authentication-service";
pub const ELEMENT_WEB: &str = "element-web";
pub const ELEMENT_ADMIN: &str = "element-admin";
pub const LIVEKIT: &str = "matrix-rtc-sfu";
pub const LK_JWT: &str = "matrix-rtc-authorisation-service";
pub const ROUTER: &str = "router";

/// Synapse's client and federation listener, on every process.
pub const SYNAPSE_HTTP_PORT: u16 = 8008;
pub const SYNAPSE_REPLICATION_PORT: u16 = 9093;
pub const SYNAPSE_HEALTH_PORT: u16 = 8080;
pub const SYNAPSE_METRICS_PORT: u16 = 9001;
pub const MAS_WEB_PORT: u16 = 8080;
pub const MAS_INTERNAL_PORT: u16 = 8081;
pub const LIVEKIT_HTTP_PORT: u16 = 7880;
pub const LIVEKIT_RTC_TCP_PORT: u16 = 30001;
pub const LIVEKIT_RTC_UDP_PORT: u16 = 30002;
pub const LK_JWT_PORT: u16 = 8080;
pub const WEB_PORT: u16 = 8080;
pub const POSTGRES_PORT: u16 = 5432;
pub const REDIS_PORT: u16 = 6379;
pub const ROUTER_SYNAPSE_PORT: u16 = 8008;
pub const ROUTER_BLACKHOLE_PORT: u16 = 8009;
pub const ROUTER_WELL_KNOWN_PORT: u16 = 8010;
pub const ROUTER_METRICS_PORT: u16 = 8405;
pub const ROUTER_STARTUP_PORT: u16 = 8406;

/// The container name (and hostname, and Synapse worker name) of federation reader `i`.
pub fn federation_reader(i: u8) -> String {
    format!("synapse-federation-reader-{i}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A port published on the host at the same number (LiveKit's media ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// How to tell the service is ready, probed from outside the container (several images
/// have no shell for a Docker HEALTHCHECK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Http {
        port: u16,
        path: &'static str,
    },
    Tcp {
        port: u16,
    },
    /// A command run inside the container.
    Exec(Vec<String>),
}

/// Traffic the front proxy sends to this service: requests for `host` whose path starts
/// with one of `path_prefixes` (all paths when empty) go to `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: Hostname,
    pub path_prefixes: Vec<&'static str>,
    pub port: u16,
}

/// One container of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub component: Component,
    pub image: ImageRef,
    /// Secret files mounted read-only at `/secrets/<NAME>`.
    pub secrets: Vec<SecretName>,
    /// Ports it listens on inside the stack's network.
    pub ports: Vec<u16>,
    pub host_ports: Vec<HostPort>,
    /// Arguments after the image's entrypoint; empty for the image's default.
    pub command: Vec<String>,
    pub readiness: Readiness,
    pub routes: Vec<Route>,
    /// Start order: every service of a stage is ready before the next stage starts.
    pub stage: u8,
}

/// Every container of the deployment, in start order.
pub fn services(d: &Deployment) -> Vec<Service> {
    let hosts = &d.hosts;
    let mut list = vec![Service {
        name: POSTGRES.into(),
        component: Component::Postgres,
        image: d.image(Component::Postgres),
        secrets: vec![
            secrets::POSTGRES_ADMIN_PASSWORD,
            secrets::POSTGRES_SYNAPSE_PASSWORD,
            secrets::POSTGRES_MAS_PASSWORD,
        ],
        ports: vec![POSTGRES_PORT],
        host_ports: vec![],
        command: vec![],
        readiness: Readiness::Exec(
            [
                "pg_isready",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-h",
                "localhost",
            ]
            .map(String::from)
            .to_vec(),
        ),
        routes: vec![],
        stage: 0,
    }];

    if d.has_workers() {
        list.push(Service {
            name: REDIS.into(),
            component: Component::Redis,
            image: d.image(Component::Redis),
            secrets: vec![],
            ports: vec![REDIS_PORT],
            host_ports: vec![],
            command: vec!["redis-server".into(), "/conf/redis.conf".into()],
            readiness: Readiness::Tcp { port: REDIS_PORT },
            routes: vec![],
            stage: 1,
        });
    }

    let synapse_secrets = vec![
        secrets::SYNAPSE_SIGNING_KEY,
        secrets::SYNAPSE_MACAROON,
        secrets::SYNAPSE_REGISTRATION_SHARED_SECRET,
        secrets::MAS_SYNAPSE_SHARED_SECRET,
    ];
    list.push(Service {
        name: SYNAPSE_MAIN.into(),
        component: Component::Synapse,
        image: d.image(Component::Synapse),
        secrets: synapse_secrets.clone(),
        ports: vec![
            SYNAPSE_HTTP_PORT,
            SYNAPSE_REPLICATION_PORT,
            SYNAPSE_HEALTH_PORT,
            SYNAPSE_METRICS_PORT,
        ],
        host_ports: vec![],
        command: vec![],
        readiness: Readiness::Http {
            port: SYNAPSE_HEALTH_PORT,
            path: "/health",
        },
        routes: vec![],
        stage: 2,
    });

    let mut mas_secrets = vec![
        secrets::POSTGRES_MAS_PASSWORD,
        secrets::MAS_SYNAPSE_SHARED_SECRET,
        secrets::MAS_ENCRYPTION_SECRET,
        secrets::MAS_RSA_PRIVATE_KEY,
        secrets::MAS_ECDSA_PRIME256V1_PRIVATE_KEY,
    ];
    if d.mas.upstream_oidc.is_some() {
        mas_secrets.push(secrets::UPSTREAM_OIDC_CLIENT_SECRET);
    }
    list.push(Service {
        name: MAS.into(),
        component: Component::Mas,
        image: d.image(Component::Mas),
        secrets: mas_secrets,
        ports: vec![MAS_WEB_PORT, MAS_INTERNAL_PORT],
        host_ports: vec![],
        command: ["server", "--no-migrate", "--config", "/conf/config.yaml"]
            .map(String::from)
            .to_vec(),
        readiness: Readiness::Http {
            port: MAS_INTERNAL_PORT,
            path: "/health",
        },
        routes: vec![Route {
            host: hosts.mas.clone(),
            path_prefixes: vec![],
            port: MAS_WEB_PORT,
        }],
        stage: 2,
    });

    for i in 0..d.synapse.federation_readers {
        list.push(Service {
            name: federation_reader(i),
            component: Component::FederationReader,
            image: d.image(Component::FederationReader),
            secrets: synapse_secrets.clone(),
            ports: vec![SYNAPSE_HTTP_PORT, SYNAPSE_HEALTH_PORT, SYNAPSE_METRICS_PORT],
            host_ports: vec![],
            command: vec![],
            readiness: Readiness::Http {
                port: SYNAPSE_HEALTH_PORT,
                path: "/health",
            },
            routes: vec![],
            stage: 3,
        });
    }

    list.push(Service {
        name: ROUTER.into(),
        component: Component::Router,
        image: d.image(Component::Router),
        secrets: vec![],
        ports: vec![
            ROUTER_SYNAPSE_PORT,
            ROUTER_BLACKHOLE_PORT,
            ROUTER_WELL_KNOWN_PORT,
            ROUTER_METRICS_PORT,
            ROUTER_STARTUP_PORT,
        ],
        host_ports: vec![],
        command: ["run", "--config", "/conf/router.yaml"]
            .map(String::from)
            .to_vec(),
        readiness: Readiness::Http {
            port: ROUTER_STARTUP_PORT,
            path: "/synapse_ready",
        },
        routes: vec![
            Route {
                host: hosts.synapse.clone(),
                path_prefixes: vec![],
                port: ROUTER_SYNAPSE_PORT,
            },
            Route {
                host: d.server_name.clone(),
                path_prefixes: vec!["/.well-known/matrix"],
                port: ROUTER_WELL_KNOWN_PORT,
            },
        ],
        stage: 4,
    });

    list.push(Service {
        name: LK_JWT.into(),
        component: Component::LkJwt,
        image: d.image(Component::LkJwt),
        secrets: vec![secrets::ELEMENT_CALL_LIVEKIT_SECRET],
        ports: vec![LK_JWT_PORT],
        host_ports: vec![],
        command: vec![],
        readiness: Readiness::Http {
            port: LK_JWT_PORT,
            path: "/healthz",
        },
        routes: vec![Route {
            host: hosts.matrix_rtc.clone(),
            path_prefixes: vec!["/sfu/get", "/healthz", "/get_token"],
            port: LK_JWT_PORT,
        }],
        stage: 5,
    });
    list.push(Service {
        name: LIVEKIT.into(),
        component: Component::LiveKit,
        image: d.image(Component::LiveKit),
        // The LiveKit secret reaches LiveKit inside its rendered keys file.
        secrets: vec![],
        ports: vec![LIVEKIT_HTTP_PORT],
        host_ports: vec![
            HostPort {
                port: LIVEKIT_RTC_TCP_PORT,
                protocol: Protocol::Tcp,
            },
            HostPort {
                port: LIVEKIT_RTC_UDP_PORT,
                protocol: Protocol::Udp,
            },
        ],
        command: ["--config", "/conf/config.yaml"].map(String::from).to_vec(),
        readiness: Readiness::Http {
            port: LIVEKIT_HTTP_PORT,
            path: "/",
        },
        routes: vec![Route {
            host: hosts.matrix_rtc.clone(),
            path_prefixes: vec![],
            port: LIVEKIT_HTTP_PORT,
        }],
        stage: 5,
    });
    list.push(web_service(
        ELEMENT_WEB,
        Component::ElementWeb,
        d,
        &hosts.element_web,
    ));
    list.push(web_service(
        ELEMENT_ADMIN,
        Component::ElementAdmin,
        d,
        &hosts.element_admin,
    ));
    list
}

fn web_service(name: &str, component: Component, d: &Deployment, host: &Hostname) -> Service {
    Service {
        name: name.into(),
        component,
        image: d.image(component),
        secrets: vec![],
        ports: vec![WEB_PORT],
        host_ports: vec![],
        command: vec![],
        readiness: Readiness::Http {
            port: WEB_PORT,
            path: "/health",
        },
        routes: vec![Route {
            host: host.clone(),
            path_prefixes: vec![],
            port: WEB_PORT,
        }],
        stage: 5,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::deployment::Deployment;

    fn deployment(extra: &str) -> Deployment {
        let text = format!(
            "server_name: example.com\nhosts:\n  synapse: matrix.example.com\n  mas: account.example.com\n  element_web: chat.example.com\n  element_admin: admin.example.com\n  matrix_rtc: mrtc.example.com\n{extra}"
        );
        Deployment::from_yaml(&text, Path::new("d.yaml"), Path::new("/")).unwrap()
    }

    fn names(list: &[Service]) -> Vec<&str> {
        list.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn services_come_in_start_order() {
        let list = services(&deployment("synapse:\n  federation_readers: 2\n"));
        assert!(list.windows(2).all(|w| w[0].stage <= w[1].stage));
        assert_eq!(
            names(&list),
            [
                "postgres",
                "redis",
                "synapse-main",
                "matrix-authentication-service",
                "synapse-federation-reader-0",
                "synapse-federation-reader-1",
                "router",
                "matrix-rtc-authorisation-service",
                "matrix-rtc-sfu",
                "element-web",
                "element-admin",
            ]
        );
    }

    #[test]
    fn redis_only_runs_with_federation_readers() {
        assert!(!names(&services(&deployment(""))).contains(&"redis"));
    }

    #[test]
    fn images_follow_overrides_and_edition() {
        let list = services(&deployment(
            "edition: pro\nsynapse:\n  federation_readers: 1\nimages:\n  mas: example.org/mas:9\n",
        ));
        let image = |name: &str| {
            list.iter()
                .find(|s| s.name == name)
                .unwrap()
                .image
                .to_string()
        };
        assert_eq!(image(MAS), "example.org/mas:9");
        assert!(image(SYNAPSE_MAIN).contains("synapse-onprem"));
        assert!(image("synapse-federation-reader-0").contains("synapse-pro-worker"));
    }

    #[test]
    fn mas_mounts_the_oidc_secret_only_when_a_provider_is_configured() {
        let without = services(&deployment(""));
        let with = services(&deployment(
            "mas:\n  upstream_oidc:\n    issuer: https://id.example.com/\n    client_id: c\n    client_secret: s\n",
        ));
        let mas = |list: &[Service]| list.iter().find(|s| s.name == MAS).unwrap().secrets.clone();
        assert!(!mas(&without).contains(&secrets::UPSTREAM_OIDC_CLIENT_SECRET));
        assert!(mas(&with).contains(&secrets::UPSTREAM_OIDC_CLIENT_SECRET));
    }

    #[test]
    fn public_routes_cover_every_public_host() {
        let d = deployment("");
        let routed: Vec<String> = services(&d)
            .iter()
            .flat_map(|s| s.routes.iter().map(|r| r.host.to_string()))
            .collect();
        for host in [
            &d.server_name,
            &d.hosts.synapse,
            &d.hosts.mas,
            &d.hosts.element_web,
            &d.hosts.element_admin,
            &d.hosts.matrix_rtc,
        ] {
            assert!(routed.contains(&host.to_string()), "{host}");
        }
    }
}
