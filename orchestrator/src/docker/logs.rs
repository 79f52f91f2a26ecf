//! `essctl logs SERVICE [-f]`: a service's container log, on stdout.

use std::io::Write;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::client::{api, is_not_found, DockerError, Engine};
use super::spec::container_name;

pub async fn logs(
    engine: &Engine,
    project: &str,
    service: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), DockerError> {
    let container = container_name(project, service);
    let mut stream = engine.docker.logs(
        &container,
        Some(LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        }),
    );
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message },
            ) => {
                // A closed stdout (`| head`) ends the stream quietly.
                if stdout.write_all(&message).is_err() {
                    return Ok(());
                }
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) if is_not_found(&e) => {
                return Err(DockerError::NoSuchService {
                    service: service.to_owned(),
                    project: project.to_owned(),
                })
            }
            Err(e) => return Err(api(format!("logs of {container}"))(e)),
        }
    }
    Ok(())
}
