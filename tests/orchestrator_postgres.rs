//! The rendered Postgres init script against a real PostgreSQL server on loopback: it
//! creates each database (UTF8, C locale) owned by its role, the generated passwords log in,
//! and a second run changes nothing it should not.
//!
//! Needs PostgreSQL's server binaries (Debian's `postgresql` package) and runs them as the
//! `postgres` user; without them the test says so and passes without checking anything.

mod orchestrator_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orchestrator_support::{essctl, stderr, write_deployment};

/// The newest `/usr/lib/postgresql/<version>/bin`, if PostgreSQL is installed.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Runs a command as the `postgres` user (initdb refuses root).
fn as_postgres(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args);
    command.envs(env.iter().copied());
    command.output().expect("run runuser")
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PostgreSQL cluster in a temporary directory, stopped when dropped.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(postgres_uid()), None).unwrap();
        let port = ess_suite::free_port();
        let data = dir.path().join("data");
        ok(
            as_postgres(
                &bin.join("initdb"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                &[],
            ),
            "initdb",
        );
        let options = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        let log = dir.path().join("log");
        ok(
            as_postgres(
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-o",
                    &options,
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "start",
                ],
                &[],
            ),
            "pg_ctl start",
        );
        Cluster { bin, dir, port }
    }

    fn socket_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", self.dir.path().display().to_string()),
            ("PGPORT", self.port.to_string()),
        ]
    }

    /// A query as the superuser over the socket, rows as `a|b` lines.
    fn query(&self, sql: &str) -> String {
        let env = self.socket_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ok(
            as_postgres(
                &self.bin.join("psql"),
                &["-U", "postgres", "-tAc", sql],
                &env,
            ),
            sql,
        )
    }

    /// Logs in over TCP with a password, as Synapse and MAS do.
    fn login(&self, user: &str, database: &str, password: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                database,
                "-tAc",
                "SELECT current_user",
            ])
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            &[],
        );
    }
}

fn postgres_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a postgres user")
}

#[test]
fn the_init_script_creates_each_database_and_role_in_a_real_postgres() {
    let Some(bin) = postgres_bin() else {
        // CI installs PostgreSQL (.ci/run): there, a missing server is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL server binaries are not installed (apt-get install postgresql)"
        );
        eprintln!(
            "skipped: PostgreSQL server binaries are not installed (apt-get install postgresql)"
        );
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    let out = dir.path().join("rendered");
    for args in [
        vec!["secrets", "--config", config.to_str().unwrap()],
        vec![
            "render",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    ] {
        let run = essctl(&args, &[]);
        assert!(run.status.success(), "essctl {args:?}: {}", stderr(&run));
    }

    // The script reads /secrets/<NAME>; give the postgres user its own copies elsewhere.
    let cluster = Cluster::start(bin);
    let secrets = cluster.dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    for name in [
        "POSTGRES_SYNAPSE_PASSWORD",
        "POSTGRES_MATRIX_AUTHENTICATION_SERVICE_PASSWORD",
    ] {
        let copy = secrets.join(name);
        fs::copy(dir.path().join("secrets").join(name), &copy).unwrap();
        std::os::unix::fs::chown(&copy, Some(postgres_uid()), None).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o400)).unwrap();
    }
    let script_text = fs::read_to_string(out.join("postgres/configure-dbs.sh")).unwrap();
    let script = cluster.dir.path().join("configure-dbs.sh");
    fs::write(
        &script,
        script_text.replace("/secrets/", &format!("{}/", secrets.display())),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let mut env = cluster.socket_env();
    env.push(("POSTGRES_USER", "postgres".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for run in 1..=2 {
        ok(
            as_postgres(Path::new("/bin/sh"), &[script.to_str().unwrap()], &env),
            &format!("init script, run {run}"),
        );
    }

    let databases = cluster.query(
        "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype \
         FROM pg_database WHERE datname IN ('synapse', 'matrixauthenticationservice') ORDER BY datname",
    );
    assert_eq!(
        databases,
        "matrixauthenticationservice|matrixauthenticationservice_user|UTF8|C|C\nsynapse|synapse_user|UTF8|C|C\n"
    );

    let password = |name: &str| fs::read_to_string(dir.path().join("secrets").join(name)).unwrap();
    let synapse = cluster.login(
        "synapse_user",
        "synapse",
        &password("POSTGRES_SYNAPSE_PASSWORD"),
    );
    assert_eq!(ok(synapse, "synapse login"), "synapse_user\n");
    let mas = cluster.login(
        "matrixauthenticationservice_user",
        "matrixauthenticationservice",
        &password("POSTGRES_MATRIX_AUTHENTICATION_SERVICE_PASSWORD"),
    );
    assert_eq!(ok(mas, "MAS login"), "matrixauthenticationservice_user\n");
    let wrong = cluster.login("synapse_user", "synapse", "not-the-password");
    assert!(!wrong.status.success(), "a wrong password must not log in");
}
