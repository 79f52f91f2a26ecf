//! `essctl admin create USER`: the first administrator, registered through `mas-cli` run by
//! exec in the MAS container. Its password is generated into the secrets directory and only
//! its location is printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::client::{DockerError, Engine};
use super::probe::exec;
use super::spec::container_name;
use crate::deployment::Deployment;
use crate::secrets::{self, SecretKind};
use crate::stack;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The password file of `user`: the generated `ADMIN_USER_PASSWORD` for the deployment's
/// `mas.admin_username`, `ADMIN_USER_PASSWORD_<user>` for anyone else.
pub fn password_file(d: &Deployment, user: &str) -> PathBuf {
    let name = if user == d.mas.admin_username.as_str() {
        secrets::ADMIN_USER_PASSWORD.as_str().to_owned()
    } else {
        format!("{}_{user}", secrets::ADMIN_USER_PASSWORD)
    };
    d.secrets_dir().join(name)
}

/// Reads the password file, generating it (owner-only, never rewritten) when missing.
fn password(path: &Path) -> Result<String, Failure> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return Ok(text);
    }
    let value = SecretKind::Rand32.generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(secrets::FILE_MODE)
        .open(path)?;
    file.write_all(&value)?;
    file.sync_all()?;
    Ok(String::from_utf8(value)?)
}

/// Registers `user` as an administrator; returns the password file's path.
pub async fn create(
    engine: &Engine,
    d: &Deployment,
    project: &str,
    user: &str,
) -> Result<PathBuf, Failure> {
    let valid = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/".contains(&b));
    if !valid {
        return Err(format!("{user:?} is not a Matrix localpart (a-z, 0-9, ._=-/)").into());
    }
    let path = password_file(d, user);
    let value = password(&path)?;
    let container = container_name(project, stack::MAS);
    // TODO: the password reaches mas-cli as an argument of the exec, which the daemon keeps
    // in the exec's record until it is pruned; mas-cli has no way to read it from a file.
    let cmd: Vec<String> = [
        "mas-cli",
        "manage",
        "register-user",
        "--config",
        "/conf/config.yaml",
        "--yes",
        "--admin",
        "--ignore-password-complexity",
        "--password",
        &value,
        user,
    ]
    .map(String::from)
    .to_vec();
    let (code, output) = exec(engine, &container, &cmd).await?;
    if code != 0 {
        let output = output.replace(&value, "***");
        return Err(DockerError::Command {
            what: format!("mas-cli manage register-user {user}"),
            code,
            output: output.trim().to_owned(),
        }
        .into());
    }
    Ok(path)
}
