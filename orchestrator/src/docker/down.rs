//! `essctl down`: every container of the project and its network removed; volumes only with
//! `--volumes`. Secrets and the front proxy's network (shared with Traefik) stay.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use tokio::time::Instant;

use super::client::{api, is_conflict, is_not_found, status_code, DockerError, Engine};
use super::plan::existing;
use super::spec::{network_name, PROJECT_LABEL};
use super::up::remove_container;

/// Removes the project; returns one line per object removed.
pub async fn down(
    engine: &Engine,
    project: &str,
    volumes: bool,
) -> Result<Vec<String>, DockerError> {
    let mut lines = Vec::new();
    let containers = existing(engine, project).await?;
    let removals = containers.iter().map(|c| remove_container(engine, &c.name));
    futures_util::future::try_join_all(removals).await?;
    for c in &containers {
        lines.push(format!("container {}: removed", c.name));
    }

    lines.extend(remove_network(engine, project).await?);

    if volumes {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{PROJECT_LABEL}={project}")],
        )]);
        let list = engine
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(api("list the project's volumes"))?;
        for v in list.volumes.unwrap_or_default() {
            match engine
                .docker
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: false }))
                .await
            {
                Ok(()) => lines.push(format!("volume {}: removed", v.name)),
                Err(e) if is_not_found(&e) => {}
                Err(e) if is_conflict(&e) => {
                    return Err(api(format!("remove volume {} (still in use)", v.name))(e))
                }
                Err(e) => return Err(api(format!("remove volume {}", v.name))(e)),
            }
        }
    }
    Ok(lines)
}

/// How long the network may go on counting an endpoint of a container just removed.
const ENDPOINTS_SETTLE: Duration = Duration::from_secs(3);

/// Removes the project network; the line to print, if there was one to remove. Docker 20.10
/// sometimes goes on counting an endpoint whose container is gone (moby/moby#42119), and
/// then refuses for as long as it runs: such a network is kept and said so, since no
/// container uses it and the next `up` takes it as it is.
async fn remove_network(engine: &Engine, project: &str) -> Result<Option<String>, DockerError> {
    let network = network_name(project);
    let deadline = Instant::now() + ENDPOINTS_SETTLE;
    loop {
        let refused = match engine.docker.remove_network(&network).await {
            Ok(()) => return Ok(Some(format!("network {network}: removed"))),
            Err(e) if is_not_found(&e) => return Ok(None),
            // 403: it has endpoints.
            Err(e) if status_code(&e) == Some(403) => e,
            Err(e) => return Err(api(format!("remove network {network}"))(e)),
        };
        let attached: Vec<String> = engine
            .docker
            .inspect_network(&network, None)
            .await
            .map_err(api(format!("inspect network {network}")))?
            .containers
            .unwrap_or_default()
            .into_values()
            .filter_map(|c| c.name)
            .collect();
        if !attached.is_empty() {
            let what = format!(
                "remove network {network}: still used by {}, not of project {project} \
                 (disconnect them with `docker network disconnect {network} NAME`, then run \
                 down again)",
                attached.join(", ")
            );
            return Err(api(what)(refused));
        }
        if Instant::now() >= deadline {
            return Ok(Some(format!(
                "network {network}: kept: Docker counts an endpoint on it that no container \
                 has (a Docker bug, moby/moby#42119); the next up reuses it, and \
                 `docker network rm {network}` works once dockerd has restarted"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
