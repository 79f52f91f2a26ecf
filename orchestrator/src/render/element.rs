//! Element Web's `config.json` and Element Admin's environment.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{https, json, RenderError, ServiceConfig};
use crate::deployment::Deployment;
use crate::stack;

#[derive(Serialize)]
struct ElementWebConfig {
    default_server_config: DefaultServerConfig,
    features: BTreeMap<&'static str, bool>,
    element_call: ElementCall,
    embedded_pages: EmbeddedPages,
    sso_redirect_options: SsoRedirectOptions,
    setting_defaults: BTreeMap<&'static str, bool>,
    mobile_guide_app_variant: &'static str,
}

#[derive(Serialize)]
struct DefaultServerConfig {
    #[serde(rename = "m.homeserver")]
    homeserver: Homeserver,
}

#[derive(Serialize)]
struct Homeserver {
    base_url: String,
    server_name: String,
}

#[derive(Serialize)]
struct ElementCall {
    use_exclusively: bool,
}

#[derive(Serialize)]
struct EmbeddedPages {
    login_for_welcome: bool,
}

#[derive(Serialize)]
struct SsoRedirectOptions {
    immediate: bool,
}

fn config(d: &Deployment) -> ElementWebConfig {
    ElementWebConfig {
        default_server_config: DefaultServerConfig {
            homeserver: Homeserver {
                base_url: https(&d.hosts.synapse, false),
                server_name: d.server_name.to_string(),
            },
        },
        features: BTreeMap::from([
            ("feature_video_rooms", true),
            ("feature_new_room_decoration_ui", true),
            ("feature_element_call_video_rooms", true),
        ]),
        element_call: ElementCall {
            use_exclusively: true,
        },
        embedded_pages: EmbeddedPages {
            login_for_welcome: true,
        },
        sso_redirect_options: SsoRedirectOptions { immediate: false },
        // Accounts are managed by MAS: Element Web's own registration, password reset and
        // deactivation screens would not work.
        setting_defaults: BTreeMap::from([
            ("urlPreviewsEnabled", true),
            ("UIFeature.registration", false),
            ("UIFeature.passwordReset", false),
            ("UIFeature.deactivate", false),
        ]),
        mobile_guide_app_variant: "element",
    }
}

pub(super) fn element_web(d: &Deployment) -> Result<ServiceConfig, RenderError> {
    Ok(ServiceConfig::new(stack::ELEMENT_WEB).file(
        "config.json",
        "/app/config.json",
        json("Element Web config.json", &config(d))?,
    ))
}

pub(super) fn element_admin(d: &Deployment) -> ServiceConfig {
    ServiceConfig::new(stack::ELEMENT_ADMIN).env("SERVER_NAME", d.server_name.to_string())
}
