//! The connection to the Docker daemon, and the daemon's answers that make create and
//! remove idempotent (404: already gone, 409: already there).

use bollard::errors::Error as BollardError;
use bollard::Docker;

/// A Docker step failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon (is dockerd running? DOCKER_HOST?)")]
    Connect(#[source] BollardError),
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: BollardError,
    },
    #[error("image {image} is not present locally and --pull never forbids pulling it")]
    ImageMissing { image: String },
    #[error("pull of {image} failed: {message}")]
    Pull { image: String, message: String },
    #[error("{service} did not become ready within {seconds}s; last probe: {probe}; last log lines:\n{logs}")]
    NotReady {
        service: String,
        seconds: u64,
        probe: String,
        logs: String,
    },
    #[error(
        "{service} stopped (exit code {code}) instead of becoming ready; last log lines:\n{logs}"
    )]
    Exited {
        service: String,
        code: i64,
        logs: String,
    },
    #[error("{what} failed (exit code {code}): {output}")]
    Command {
        what: String,
        code: i64,
        output: String,
    },
    #[error("no container of service {service} in project {project} (run `essctl up`)")]
    NoSuchService { service: String, project: String },
}

/// Wraps a daemon error with what was being done.
pub fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

/// The daemon's HTTP status of a failed call, if it answered at all.
pub fn status_code(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub fn is_not_found(error: &BollardError) -> bool {
    status_code(error) == Some(404)
}

pub fn is_conflict(error: &BollardError) -> bool {
    status_code(error) == Some(409)
}

/// A connected daemon, API version negotiated (Debian's docker.io may be older than bollard).
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
}

impl Engine {
    /// Connects through `DOCKER_HOST`, else the local socket.
    pub async fn connect() -> Result<Engine, DockerError> {
        let docker = Docker::connect_with_local_defaults().map_err(DockerError::Connect)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(DockerError::Connect)?;
        Ok(Engine { docker })
    }
}
