//! `essctl down`: every container of the project and its network removed; volumes only with
//! `--volumes`. Secrets and the front proxy's network (shared with Traefik) stay.

use std::collections::HashMap;

use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};

use super::client::{api, is_conflict, is_not_found, DockerError, Engine};
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

    let network = network_name(project);
    match engine.docker.remove_network(&network).await {
        Ok(()) => lines.push(format!("network {network}: removed")),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(api(format!("remove network {network}"))(e)),
    }

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
