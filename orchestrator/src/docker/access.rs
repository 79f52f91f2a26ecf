//! Who may read what a container mounts. The services run as their own non-root users, not as
//! the user who runs essctl, so before any container is created:
//! - a secret file (0400, often mounted by several services) goes to the secrets group, 0440;
//! - a rendered file that holds secrets (0600, one service's) goes to that service's user,
//!   still 0600: libpq ignores a passfile its group may read, LiveKit a key file others may.
//!
//! Every container has the secrets group; nothing is given to "others".

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::spec::Desired;

/// Secret files: read-only, for the owner and the secrets group.
pub const SECRET_MODE: u32 = 0o440;
/// Rendered files that hold secrets: owner-only, the owner being the service's user.
pub const SENSITIVE_MODE: u32 = 0o600;

/// A mounted file could not be given to the user or group that must read it.
#[derive(Debug, thiserror::Error)]
#[error("cannot give {path} to {to} (essctl up runs as root to do so)")]
pub struct AccessError {
    pub path: PathBuf,
    /// "group 10010 (secrets.group)", "user 10091 (synapse-main)".
    pub to: String,
    #[source]
    pub source: std::io::Error,
}

/// Gives every secret file that a container of `desired` mounts to the secrets `group`, and
/// every owner-only rendered file to the user of the service that mounts it. Files already
/// right are not touched; plain files (0644) are left as they are.
pub fn share_with_containers(desired: &Desired, group: u32) -> Result<(), AccessError> {
    let specs = desired.containers.iter().chain(desired.mas_migrate.iter());
    for spec in specs {
        for mount in &spec.secrets {
            let to = || format!("group {group} (secrets.group)");
            give(&mount.source, None, group, SECRET_MODE, to)?;
        }
        let to = || format!("user {} ({})", spec.user, spec.service);
        let Some((uid, gid)) = spec.owner() else {
            continue;
        };
        for mount in &spec.files {
            let meta = fs::metadata(&mount.source).map_err(|source| AccessError {
                path: mount.source.clone(),
                to: to(),
                source,
            })?;
            if meta.permissions().mode() & 0o004 == 0 {
                give(&mount.source, Some(uid), gid, SENSITIVE_MODE, to)?;
            }
        }
    }
    Ok(())
}

fn give(
    path: &Path,
    uid: Option<u32>,
    gid: u32,
    mode: u32,
    to: impl Fn() -> String,
) -> Result<(), AccessError> {
    let error = |source| AccessError {
        path: path.to_owned(),
        to: to(),
        source,
    };
    let meta = fs::metadata(path).map_err(error)?;
    if meta.gid() != gid || uid.is_some_and(|u| meta.uid() != u) {
        chown(path, uid, Some(gid)).map_err(error)?;
    }
    if meta.permissions().mode() & 0o777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(error)?;
    }
    Ok(())
}
