//! The `/.well-known/matrix/server` and `/.well-known/matrix/client` documents, served by the
//! router on the server name's apex.

use serde::Serialize;

use super::{https, json, RenderError};
use crate::deployment::Deployment;

#[derive(Serialize)]
struct Server {
    #[serde(rename = "m.server")]
    server: String,
}

#[derive(Serialize)]
struct Client {
    #[serde(rename = "m.homeserver")]
    homeserver: BaseUrl,
    #[serde(rename = "org.matrix.msc4143.rtc_foci")]
    rtc_foci: Vec<Focus>,
}

#[derive(Serialize)]
struct BaseUrl {
    base_url: String,
}

#[derive(Serialize)]
struct Focus {
    #[serde(rename = "type")]
    kind: &'static str,
    livekit_service_url: String,
}

/// `/.well-known/matrix/server`: federation goes to the Synapse host on 443.
pub(super) fn server(d: &Deployment) -> Result<Vec<u8>, RenderError> {
    json(
        "well-known server",
        &Server {
            server: format!("{}:443", d.hosts.synapse),
        },
    )
}

/// `/.well-known/matrix/client`: the homeserver URL and the LiveKit focus for calls.
pub(super) fn client(d: &Deployment) -> Result<Vec<u8>, RenderError> {
    let client = Client {
        homeserver: BaseUrl {
            base_url: https(&d.hosts.synapse, false),
        },
        rtc_foci: vec![Focus {
            kind: "livekit",
            livekit_service_url: https(&d.hosts.matrix_rtc, false),
        }],
    };
    json("well-known client", &client)
}
