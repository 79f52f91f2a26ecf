//! `chown UID:GID PATH...` with numeric ids only: what essctl runs in a service's image to give
//! a new volume to the service's user. The stand-in image installs this binary as /bin/chown
//! so that the stand-in plays that part of the real images too.

use std::ffi::OsString;
use std::path::PathBuf;

pub fn run(mut args: impl Iterator<Item = OsString>) -> Result<(), String> {
    let owner = args
        .next()
        .ok_or("usage: chown UID:GID PATH...")?
        .into_string()
        .map_err(|_| "the owner is not UTF-8".to_string())?;
    let (uid, gid) = owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("expected numeric UID:GID, got {owner:?}"))?;
    let paths: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if paths.is_empty() {
        return Err("usage: chown UID:GID PATH...".into());
    }
    for path in paths {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
