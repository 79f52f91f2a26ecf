//! The container image of each component: pinned defaults per edition (from the
//! matrix-stack chart) and the deployment file's overrides.

use serde::Deserialize;

use crate::deployment::{Edition, ImageRef};

/// A kind of container of the stack. Several containers may share one (federation readers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    Postgres,
    Redis,
    Synapse,
    FederationReader,
    Mas,
    ElementWeb,
    ElementAdmin,
    LiveKit,
    LkJwt,
    Router,
}

impl Component {
    pub const ALL: [Component; 10] = [
        Component::Postgres,
        Component::Redis,
        Component::Synapse,
        Component::FederationReader,
        Component::Mas,
        Component::ElementWeb,
        Component::ElementAdmin,
        Component::LiveKit,
        Component::LkJwt,
        Component::Router,
    ];

    /// The key of this component under `images:` in the deployment file.
    pub fn key(self) -> &'static str {
        match self {
            Component::Postgres => "postgres",
            Component::Redis => "redis",
            Component::Synapse => "synapse",
            Component::FederationReader => "federation_reader",
            Component::Mas => "mas",
            Component::ElementWeb => "element_web",
            Component::ElementAdmin => "element_admin",
            Component::LiveKit => "livekit",
            Component::LkJwt => "lk_jwt",
            Component::Router => "router",
        }
    }

    /// The user and group the container runs as: the chart's `runAsUser`/`runAsGroup` for
    /// the component, so that the images run as they do under Kubernetes (never root, and
    /// without an entrypoint that drops privileges and with them the secrets group).
    pub fn user(self) -> (u32, u32) {
        let id = match self {
            Component::Postgres | Component::Synapse | Component::FederationReader => 10091,
            Component::Redis => 10002,
            Component::Mas => 10005,
            Component::ElementWeb => 10004,
            Component::ElementAdmin => 10104,
            Component::LiveKit => 10033,
            Component::LkJwt => 10030,
            Component::Router => 10001,
        };
        (id, id)
    }

    /// The pinned image used when the deployment file does not override it.
    pub fn default_image(self, edition: Edition) -> ImageRef {
        let router = format!("localhost/ess-router:{}", env!("CARGO_PKG_VERSION"));
        let reference = match (self, edition) {
            (Component::Postgres, _) => "docker.io/postgres:17-alpine",
            (Component::Redis, _) => "docker.io/library/redis:7.4-alpine",
            (Component::Synapse | Component::FederationReader, Edition::Community) => {
                "oci.element.io/synapse:v1.159.0"
            }
            // TODO: the Pro tags follow the Community Synapse release; confirm them against
            // Element's Pro release notes, which are not public.
            (Component::Synapse, Edition::Pro) => "oci.element.io/synapse-onprem:v1.159.0",
            (Component::FederationReader, Edition::Pro) => {
                "oci.element.io/synapse-pro-worker:v1.159.0"
            }
            (Component::Mas, _) => "ghcr.io/element-hq/matrix-authentication-service:1.23.0",
            (Component::ElementWeb, _) => "oci.element.io/element-web:v1.12.26",
            (Component::ElementAdmin, _) => "oci.element.io/element-admin:0.1.12",
            (Component::LiveKit, _) => "docker.io/livekit/livekit-server:v1.13.5",
            (Component::LkJwt, _) => "oci.element.io/lk-jwt-service:0.6.0",
            (Component::Router, _) => router.as_str(),
        };
        ImageRef::try_from(reference.to_owned())
            .unwrap_or_else(|e| unreachable!("built-in image default is pinned: {e}"))
    }
}

/// `images:` in the deployment file: any component's image, replacing the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOverrides {
    pub postgres: Option<ImageRef>,
    pub redis: Option<ImageRef>,
    pub synapse: Option<ImageRef>,
    pub federation_reader: Option<ImageRef>,
    pub mas: Option<ImageRef>,
    pub element_web: Option<ImageRef>,
    pub element_admin: Option<ImageRef>,
    pub livekit: Option<ImageRef>,
    pub lk_jwt: Option<ImageRef>,
    pub router: Option<ImageRef>,
}

impl ImageOverrides {
    pub fn get(&self, component: Component) -> Option<&ImageRef> {
        match component {
            Component::Postgres => self.postgres.as_ref(),
            Component::Redis => self.redis.as_ref(),
            Component::Synapse => self.synapse.as_ref(),
            Component::FederationReader => self.federation_reader.as_ref(),
            Component::Mas => self.mas.as_ref(),
            Component::ElementWeb => self.element_web.as_ref(),
            Component::ElementAdmin => self.element_admin.as_ref(),
            Component::LiveKit => self.livekit.as_ref(),
            Component::LkJwt => self.lk_jwt.as_ref(),
            Component::Router => self.router.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_image_is_pinned_for_both_editions() {
        for component in Component::ALL {
            for edition in [Edition::Community, Edition::Pro] {
                let image = component.default_image(edition);
                assert!(image.as_str().contains(':'), "{image}");
            }
        }
    }

    #[test]
    fn pro_changes_only_the_synapse_images() {
        for component in Component::ALL {
            let community = component.default_image(Edition::Community);
            let pro = component.default_image(Edition::Pro);
            let synapse = matches!(component, Component::Synapse | Component::FederationReader);
            assert_eq!(community != pro, synapse, "{component:?}");
        }
    }
}
