//! Matrix RTC: LiveKit's config and keys file, and the environment of lk-jwt-service, the
//! authorisation service that hands out LiveKit tokens to Matrix users.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::{yaml, Embedded, RenderError, ServiceConfig};
use crate::deployment::Deployment;
use crate::secrets;
use crate::stack;

#[derive(Serialize)]
struct LiveKitConfig {
    port: u16,
    prometheus: Prometheus,
    logging: Logging,
    rtc: Rtc,
    key_file: &'static str,
    turn: Turn,
    room: Room,
    webhook: Webhook,
}

#[derive(Serialize)]
struct Prometheus {
    port: u16,
}

#[derive(Serialize)]
struct Logging {
    level: &'static str,
    pion_level: &'static str,
    json: bool,
}

#[derive(Serialize)]
struct Rtc {
    use_external_ip: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_ip: Option<IpAddr>,
    tcp_port: u16,
    udp_port: u16,
}

#[derive(Serialize)]
struct Turn {
    enabled: bool,
}

#[derive(Serialize)]
struct Room {
    auto_create: bool,
}

#[derive(Serialize)]
struct Webhook {
    api_key: String,
    urls: Vec<String>,
}

const KEYS_MOUNT: &str = "/conf/keys.yaml";

fn config(d: &Deployment) -> LiveKitConfig {
    let node_ip = d.matrix_rtc.public_ip();
    LiveKitConfig {
        port: stack::LIVEKIT_HTTP_PORT,
        prometheus: Prometheus { port: 6789 },
        logging: Logging {
            level: "info",
            pion_level: "error",
            json: false,
        },
        rtc: Rtc {
            use_external_ip: node_ip.is_none(),
            node_ip,
            tcp_port: stack::LIVEKIT_RTC_TCP_PORT,
            udp_port: stack::LIVEKIT_RTC_UDP_PORT,
        },
        key_file: KEYS_MOUNT,
        turn: Turn { enabled: false },
        // Rooms are created by lk-jwt for authorised Matrix users only.
        room: Room { auto_create: false },
        webhook: Webhook {
            api_key: d.matrix_rtc.livekit_key.to_string(),
            urls: vec![format!(
                "http://{}:{}/sfu_webhook",
                stack::LK_JWT,
                stack::LK_JWT_PORT
            )],
        },
    }
}

pub(super) fn livekit(d: &Deployment, embedded: &Embedded) -> Result<ServiceConfig, RenderError> {
    let keys = BTreeMap::from([(
        d.matrix_rtc.livekit_key.to_string(),
        embedded.livekit_secret.clone(),
    )]);
    Ok(ServiceConfig::new(stack::LIVEKIT)
        .file(
            "config.yaml",
            "/conf/config.yaml",
            yaml("LiveKit config", &config(d))?,
        )
        .sensitive_file("keys.yaml", KEYS_MOUNT, yaml("LiveKit keys", &keys)?))
}

pub(super) fn lk_jwt(d: &Deployment) -> ServiceConfig {
    let server_name = d.server_name.to_string();
    ServiceConfig::new(stack::LK_JWT)
        .env("LIVEKIT_KEY", d.matrix_rtc.livekit_key.to_string())
        .env(
            "LIVEKIT_SECRET_FROM_FILE",
            secrets::ELEMENT_CALL_LIVEKIT_SECRET.container_path(),
        )
        .env("LIVEKIT_URL", format!("wss://{}", d.hosts.matrix_rtc))
        .env("LIVEKIT_FULL_ACCESS_HOMESERVERS", server_name.clone())
        // lk-jwt checks OpenID tokens against the homeserver: inside the stack, through the
        // router rather than out through the front proxy.
        .env(
            "LIVEKIT_CS_API_URL_OVERRIDES",
            format!(
                "{server_name}=http://{}:{}",
                stack::ROUTER,
                stack::ROUTER_SYNAPSE_PORT
            ),
        )
}
