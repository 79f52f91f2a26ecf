//! The secrets directory on disk: owner-only, files written atomically (a temporary file in
//! the same directory, synced, then renamed into place) so a crash never leaves half a key.

use std::fs::{self, DirBuilder, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every secret file: read-only for the owner. LiveKit refuses key files that any
/// "other" may read; a read-only file also resists accidental edits.
pub const FILE_MODE: u32 = 0o400;
/// Mode of the secrets directory when `essctl` creates it.
pub const DIR_MODE: u32 = 0o700;

/// The secrets directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create secrets directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is open to group or others (mode {mode:04o}); expected owner-only, e.g. chmod 700"
    )]
    OpenDir { path: PathBuf, mode: u32 },
    #[error(
        "{path} is open to others or writable by its group (mode {mode:04o}); expected 0400, \
         or 0440 as `essctl up` leaves it for the secrets group"
    )]
    OpenFile { path: PathBuf, mode: u32 },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} appeared while it was being generated; it was left as found")]
    Raced { path: PathBuf },
}

/// Creates the directory owner-only, or checks that an existing one is.
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::OpenDir {
                    path: dir.to_owned(),
                    mode,
                });
            }
            Ok(())
        }
        Ok(_) => Err(StoreError::CreateDir {
            path: dir.to_owned(),
            source: std::io::Error::new(ErrorKind::AlreadyExists, "exists and is not a directory"),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            }),
        Err(source) => Err(StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// The contents of an existing secret file, after checking it is a regular owner-only file;
/// `None` when there is no such file.
pub fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.is_file() {
        return Err(StoreError::NotAFile {
            path: path.to_owned(),
        });
    }
    // Group read is how `essctl up` shares the file with the containers (docker/access.rs).
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        return Err(StoreError::OpenFile {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map(Some).map_err(|source| StoreError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes a new file that must not exist yet. If something created it meanwhile, that file
/// is kept and [`StoreError::Raced`] returned.
pub fn create_new(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let temp = staged(path, contents)?;
    match temp.persist_noclobber(path) {
        Ok(_) => sync_parent(path),
        Err(e) if e.error.kind() == ErrorKind::AlreadyExists => Err(StoreError::Raced {
            path: path.to_owned(),
        }),
        Err(e) => Err(StoreError::Write {
            path: path.to_owned(),
            source: e.error,
        }),
    }
}

/// Writes a file, atomically replacing any previous one (for values fetched from elsewhere,
/// which the operator may rotate).
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let temp = staged(path, contents)?;
    temp.persist(path).map_err(|e| StoreError::Write {
        path: path.to_owned(),
        source: e.error,
    })?;
    sync_parent(path)
}

fn staged(path: &Path, contents: &[u8]) -> Result<tempfile::NamedTempFile, StoreError> {
    let write_error = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".essctl-")
        .permissions(Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(contents).map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    Ok(temp)
}

/// Makes the rename itself durable.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/secrets");
        prepare_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            DIR_MODE
        );
    }

    #[test]
    fn an_open_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), Permissions::from_mode(0o755)).unwrap();
        let err = prepare_dir(root.path()).unwrap_err().to_string();
        assert!(err.contains("mode 0755"), "{err}");
    }

    #[test]
    fn create_new_never_replaces_a_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("S");
        create_new(&path, b"first").unwrap();
        assert!(matches!(
            create_new(&path, b"second"),
            Err(StoreError::Raced { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            FILE_MODE
        );
        let leftovers = fs::read_dir(root.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn a_readable_secret_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("S");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_existing(&path),
            Err(StoreError::OpenFile { mode: 0o644, .. })
        ));
    }

    #[test]
    fn a_file_shared_with_the_secrets_group_is_read_but_not_a_group_writable_one() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("S");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o440)).unwrap();
        assert_eq!(read_existing(&path).unwrap().as_deref(), Some(&b"x"[..]));
        fs::set_permissions(&path, Permissions::from_mode(0o460)).unwrap();
        assert!(matches!(
            read_existing(&path),
            Err(StoreError::OpenFile { mode: 0o460, .. })
        ));
    }
}
