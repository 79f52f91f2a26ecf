//! The data stores: Postgres's environment and its init script (one database and owner role
//! per service), and Redis's config (used when Synapse runs workers).

use super::mas::{MAS_DB, MAS_DB_USER};
use super::synapse::{SYNAPSE_DB, SYNAPSE_DB_USER};
use super::{RenderError, ServiceConfig};
use crate::deployment::Deployment;
use crate::secrets::{self, SecretName};
use crate::stack;

/// One database of the stack and the role that owns it.
struct OwnedDatabase {
    role: &'static str,
    database: &'static str,
    password: SecretName,
}

const DATABASES: [OwnedDatabase; 2] = [
    OwnedDatabase {
        role: SYNAPSE_DB_USER,
        database: SYNAPSE_DB,
        password: secrets::POSTGRES_SYNAPSE_PASSWORD,
    },
    OwnedDatabase {
        role: MAS_DB_USER,
        database: MAS_DB,
        password: secrets::POSTGRES_MAS_PASSWORD,
    },
];

/// Creates (or brings up to date) a role, its password and its database. Values reach SQL
/// only as psql variables quoted by `format(%I, %L)`; the password never appears on a
/// command line. The database is made like `createdb --encoding=UTF8 --locale=C
/// --template=template0`, which Synapse requires.
const ENSURE_DATABASE: &str = r#"ensure_database() {
  role="$1"
  database="$2"
  password=$(cat "$3")
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    --set=role="$role" --set=database="$database" --set=password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I WITH OWNER %I ENCODING %L LOCALE %L TEMPLATE template0',
              :'database', :'role', 'UTF8', 'C')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SQL
}
"#;

/// Single-quotes a word for `sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn init_script() -> Vec<u8> {
    let mut script = String::from(
        "#!/bin/sh\n\
         # Written by essctl. Run by the postgres image from /docker-entrypoint-initdb.d when\n\
         # its data directory is new: one database and owner role per service. The image\n\
         # sources scripts that are not executable, so this one sets no shell options beyond\n\
         # the entrypoint's own `-e`.\n\
         set -e\n\n",
    );
    script.push_str(ENSURE_DATABASE);
    script.push('\n');
    for db in &DATABASES {
        let call = [
            db.role.to_owned(),
            db.database.to_owned(),
            db.password.container_path(),
        ]
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
        script.push_str(&format!("ensure_database {call}\n"));
    }
    script.into_bytes()
}

pub(super) fn postgres(_d: &Deployment) -> Result<ServiceConfig, RenderError> {
    Ok(ServiceConfig::new(stack::POSTGRES)
        .file(
            "configure-dbs.sh",
            "/docker-entrypoint-initdb.d/configure-dbs.sh",
            init_script(),
        )
        .env("POSTGRES_USER", "postgres")
        .env(
            "POSTGRES_PASSWORD_FILE",
            secrets::POSTGRES_ADMIN_PASSWORD.container_path(),
        ))
}

/// Redis as Synapse's replication bus: nothing is persisted, no password (it is reachable
/// only on the stack's network).
const REDIS_SETTINGS: &[(&str, &str)] = &[
    ("protected-mode", "no"),
    ("port", "6379"),
    ("tcp-backlog", "511"),
    ("tcp-keepalive", "300"),
    ("timeout", "0"),
    ("daemonize", "no"),
    ("supervised", "no"),
    ("loglevel", "notice"),
    ("logfile", "''"),
    ("databases", "16"),
    ("save", "''"),
    ("appendonly", "no"),
    ("hz", "1"),
    ("dynamic-hz", "yes"),
    ("maxmemory", "50mb"),
    ("maxmemory-policy", "allkeys-lru"),
];

pub(super) fn redis(_d: &Deployment) -> ServiceConfig {
    let mut text = String::from("# Written by essctl.\n");
    for (directive, value) in REDIS_SETTINGS {
        text.push_str(&format!("{directive} {value}\n"));
    }
    ServiceConfig::new(stack::REDIS).file("redis.conf", "/conf/redis.conf", text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn the_init_script_creates_each_database_from_its_secret_file() {
        let script = String::from_utf8(init_script()).unwrap();
        assert!(script.contains(
            "ensure_database 'synapse_user' 'synapse' '/secrets/POSTGRES_SYNAPSE_PASSWORD'"
        ));
        assert!(script.contains("ensure_database 'matrixauthenticationservice_user' 'matrixauthenticationservice' '/secrets/POSTGRES_MATRIX_AUTHENTICATION_SERVICE_PASSWORD'"));
    }
}
