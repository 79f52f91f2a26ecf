//! Images: present locally, or pulled with the deployment's registry credentials, with a
//! progress line per image on stderr.

use std::collections::BTreeMap;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::client::{DockerError, Engine};
use crate::deployment::{Deployment, ImageRef};
use crate::secret_source::{Resolver, SourceError};

/// When `up` pulls an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PullPolicy {
    /// Only images not present locally.
    #[default]
    Missing,
    /// Never: a missing image is an error.
    Never,
    /// Every image, every time (a moved tag then recreates its containers).
    Always,
}

/// Credentials of the registry an image comes from, if the deployment file has them.
async fn credentials(
    d: &Deployment,
    image: &ImageRef,
    resolver: &mut Resolver<'_>,
) -> Result<Option<DockerCredentials>, SourceError> {
    let Some(registry) = d.registries.iter().find(|r| r.server == image.registry()) else {
        return Ok(None);
    };
    Ok(Some(DockerCredentials {
        username: Some(resolver.resolve(&registry.username).await?),
        password: Some(resolver.resolve(&registry.password).await?),
        serveraddress: Some(registry.server.clone()),
        ..Default::default()
    }))
}

/// Makes every image of `present` (reference -> local id) available per `policy`; returns
/// the references pulled.
pub async fn ensure_images(
    engine: &Engine,
    d: &Deployment,
    present: &BTreeMap<String, Option<String>>,
    policy: PullPolicy,
    resolver: &mut Resolver<'_>,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let mut pulled = Vec::new();
    for (reference, id) in present {
        let wanted = match policy {
            PullPolicy::Never if id.is_none() => {
                return Err(DockerError::ImageMissing {
                    image: reference.clone(),
                }
                .into())
            }
            PullPolicy::Never => false,
            PullPolicy::Missing => id.is_none(),
            PullPolicy::Always => true,
        };
        if !wanted {
            continue;
        }
        let image = ImageRef::try_from(reference.clone()).map_err(|message| DockerError::Pull {
            image: reference.clone(),
            message,
        })?;
        let creds = credentials(d, &image, resolver).await?;
        pull(engine, reference, creds).await?;
        pulled.push(reference.clone());
    }
    Ok(pulled)
}

async fn pull(
    engine: &Engine,
    reference: &str,
    credentials: Option<DockerCredentials>,
) -> Result<(), DockerError> {
    eprintln!("pulling {reference}");
    let options = CreateImageOptions {
        from_image: Some(reference.to_owned()),
        ..Default::default()
    };
    let mut stream = engine.docker.create_image(Some(options), None, credentials);
    let mut layers: BTreeMap<String, String> = BTreeMap::new();
    let mut last_report = std::time::Instant::now();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| DockerError::Pull {
            image: reference.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(detail) = info.error_detail {
            return Err(DockerError::Pull {
                image: reference.to_owned(),
                message: detail.message.unwrap_or_default(),
            });
        }
        if let (Some(id), Some(status)) = (info.id, info.status) {
            layers.insert(id, status);
        }
        if last_report.elapsed() >= std::time::Duration::from_secs(1) {
            last_report = std::time::Instant::now();
            let done = layers
                .values()
                .filter(|s| s.starts_with("Pull complete") || s.starts_with("Already exists"))
                .count();
            eprintln!("  {reference}: {done}/{} layers", layers.len());
        }
    }
    eprintln!("pulled {reference}");
    Ok(())
}
