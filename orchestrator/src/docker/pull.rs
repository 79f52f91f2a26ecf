//! Images: present locally, or pulled with the deployment's registry credentials, with the
//! pull's progress (layers, megabytes) on stderr.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::CreateImageInfo;
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
        let with_credentials = creds.is_some();
        pull(engine, reference, creds)
            .await
            .map_err(|e| explain(e, image.registry(), with_credentials))?;
        pulled.push(reference.clone());
    }
    Ok(pulled)
}

/// Adds to a failed pull whose credentials were sent: the `registries:` entry's, or none
/// (then only when the registry asked for some).
fn explain(error: DockerError, registry: &str, with_credentials: bool) -> DockerError {
    let DockerError::Pull { image, message } = error else {
        return error;
    };
    let lower = message.to_ascii_lowercase();
    let asked_for_credentials = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let message = if with_credentials {
        format!("{message} (with the credentials of the registries: entry for {registry})")
    } else if asked_for_credentials {
        format!("{message} (no registries: entry for {registry})")
    } else {
        message
    };
    DockerError::Pull { image, message }
}

/// The daemon's own words: its message without bollard's "Docker responded with status code".
fn daemon_message(error: bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}

/// One layer of a pull, as the daemon's progress messages describe it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Layer {
    /// Bytes downloaded and the layer's size, once the daemon said.
    downloaded: u64,
    size: Option<u64>,
    /// Pulled now or already present.
    done: bool,
    cached: bool,
}

/// What a pull has done so far.
#[derive(Debug, Default)]
struct Progress {
    layers: BTreeMap<String, Layer>,
    up_to_date: bool,
}

impl Progress {
    fn update(&mut self, info: &CreateImageInfo) {
        let Some(status) = info.status.as_deref() else {
            return;
        };
        if status.starts_with("Status: Image is up to date") {
            self.up_to_date = true;
        }
        // "Pulling from <repository>" carries the tag as its id; it is no layer.
        let Some(id) = info
            .id
            .as_deref()
            .filter(|_| !status.starts_with("Pulling from"))
        else {
            return;
        };
        let layer = self.layers.entry(id.to_owned()).or_default();
        let detail = info.progress_detail.as_ref();
        let total = detail
            .and_then(|d| d.total)
            .and_then(|t| u64::try_from(t).ok());
        match status {
            "Downloading" => {
                if let Some(current) = detail.and_then(|d| d.current) {
                    layer.downloaded = u64::try_from(current).unwrap_or(0);
                }
                layer.size = total.filter(|t| *t > 0).or(layer.size);
            }
            "Verifying Checksum" | "Download complete" => {
                if let Some(size) = layer.size {
                    layer.downloaded = size;
                }
            }
            "Pull complete" => layer.done = true,
            "Already exists" => {
                layer.done = true;
                layer.cached = true;
            }
            _ => {}
        }
    }

    fn downloaded(&self) -> (u64, u64) {
        self.layers.values().fold((0, 0), |(got, of), l| {
            (got + l.downloaded, of + l.size.unwrap_or(l.downloaded))
        })
    }

    /// `3/5 layers, 12.1 MB of 40.0 MB`.
    fn line(&self) -> String {
        let done = self.layers.values().filter(|l| l.done).count();
        let (got, of) = self.downloaded();
        format!(
            "{done}/{} layers, {} of {}",
            self.layers.len(),
            megabytes(got),
            megabytes(of)
        )
    }

    /// `5 layers, 2 already present, 40.0 MB downloaded`, or `up to date` (the daemon had
    /// the image under another name: nothing to download).
    fn summary(&self) -> String {
        if self.up_to_date {
            return "up to date".into();
        }
        let cached = self.layers.values().filter(|l| l.cached).count();
        let (got, _) = self.downloaded();
        let present = if cached > 0 {
            format!(", {cached} already present")
        } else {
            String::new()
        };
        format!(
            "{} layers{present}, {} downloaded",
            self.layers.len(),
            megabytes(got)
        )
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Pulls one image. Progress on stderr: redrawn in place ten times a second on a terminal,
/// else one line per second; `pulled R (...)` at the end.
async fn pull(
    engine: &Engine,
    reference: &str,
    credentials: Option<DockerCredentials>,
) -> Result<(), DockerError> {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    eprintln!("pulling {reference}");
    let started = Instant::now();
    let options = CreateImageOptions {
        from_image: Some(reference.to_owned()),
        ..Default::default()
    };
    let mut stream = engine.docker.create_image(Some(options), None, credentials);
    let mut progress = Progress::default();
    let mut last_report = Instant::now();
    let mut drawn = false;
    let failed = |message: String| DockerError::Pull {
        image: reference.to_owned(),
        message,
    };
    let result = loop {
        let Some(item) = stream.next().await else {
            break Ok(());
        };
        let info = match item {
            Ok(info) => info,
            Err(e) => break Err(failed(daemon_message(e))),
        };
        if let Some(detail) = info.error_detail {
            break Err(failed(detail.message.unwrap_or_default()));
        }
        progress.update(&info);
        if last_report.elapsed() >= every && !progress.layers.is_empty() {
            last_report = Instant::now();
            if terminal {
                eprint!("\r\x1b[K  {reference}: {}", progress.line());
                drawn = true;
            } else {
                eprintln!("  {reference}: {}", progress.line());
            }
        }
    };
    if drawn {
        eprint!("\r\x1b[K");
    }
    result?;
    eprintln!(
        "pulled {reference} ({}, {:.1?})",
        progress.summary(),
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of a real pull (docker 20.10, a registry on loopback), one per line.
    fn replay(lines: &str) -> Progress {
        let mut progress = Progress::default();
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            progress.update(&serde_json::from_str(line).unwrap());
        }
        progress
    }

    #[test]
    fn progress_counts_layers_and_bytes_but_not_the_tag() {
        let progress = replay(
            r#"{"status":"Pulling from regx","id":"1"}
{"status":"Pulling fs layer","progressDetail":{},"id":"284e45e8a05d"}
{"status":"Already exists","progressDetail":{},"id":"aaaaaaaaaaaa"}
{"status":"Downloading","progressDetail":{"current":36445,"total":3001124},"id":"284e45e8a05d"}"#,
        );
        assert_eq!(progress.line(), "1/2 layers, 0.0 MB of 3.0 MB");
        let progress = replay(
            r#"{"status":"Pulling from regx","id":"1"}
{"status":"Pulling fs layer","progressDetail":{},"id":"284e45e8a05d"}
{"status":"Already exists","progressDetail":{},"id":"aaaaaaaaaaaa"}
{"status":"Downloading","progressDetail":{"current":36445,"total":3001124},"id":"284e45e8a05d"}
{"status":"Verifying Checksum","progressDetail":{},"id":"284e45e8a05d"}
{"status":"Download complete","progressDetail":{},"id":"284e45e8a05d"}
{"status":"Extracting","progressDetail":{"current":32768,"total":3001124},"id":"284e45e8a05d"}
{"status":"Pull complete","progressDetail":{},"id":"284e45e8a05d"}
{"status":"Digest: sha256:7d9fbe714e51472aaca78c5621a79691969ff6ea277083b55d1404b75b451b3d"}
{"status":"Status: Downloaded newer image for 127.0.0.1:5799/regx:1"}"#,
        );
        assert_eq!(progress.line(), "2/2 layers, 3.0 MB of 3.0 MB");
        assert_eq!(
            progress.summary(),
            "2 layers, 1 already present, 3.0 MB downloaded"
        );
        let progress = replay(
            r#"{"status":"Pulling from regx","id":"1"}
{"status":"Digest: sha256:7d9f"}
{"status":"Status: Image is up to date for 127.0.0.1:5799/regx:1"}"#,
        );
        assert_eq!(progress.summary(), "up to date");
    }

    #[test]
    fn a_failed_pull_says_whose_credentials_were_sent() {
        let failed = |message: &str| DockerError::Pull {
            image: "r.example/x:1".into(),
            message: message.into(),
        };
        let explained = |e: DockerError| e.to_string();
        assert_eq!(
            explained(explain(
                failed("unauthorized: authentication required"),
                "r.example",
                true
            )),
            "pull of r.example/x:1 failed: unauthorized: authentication required \
             (with the credentials of the registries: entry for r.example)"
        );
        assert_eq!(
            explained(explain(
                failed("Head \"http://r.example/v2/x/manifests/1\": no basic auth credentials"),
                "r.example",
                false
            )),
            "pull of r.example/x:1 failed: Head \"http://r.example/v2/x/manifests/1\": no basic \
             auth credentials (no registries: entry for r.example)"
        );
        // Not a question of credentials: nothing added.
        assert_eq!(
            explained(explain(failed("manifest unknown"), "r.example", false)),
            "pull of r.example/x:1 failed: manifest unknown"
        );
    }
}
