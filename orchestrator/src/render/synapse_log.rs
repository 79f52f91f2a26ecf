//! Synapse's Python logging config: one console handler, and SQL logging capped at INFO.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize)]
pub(super) struct LogConfig {
    version: u8,
    formatters: BTreeMap<&'static str, Formatter>,
    handlers: BTreeMap<&'static str, Handler>,
    loggers: BTreeMap<&'static str, Level>,
    root: Root,
    disable_existing_loggers: bool,
}

#[derive(Serialize)]
struct Formatter {
    format: &'static str,
}

#[derive(Serialize)]
struct Handler {
    class: &'static str,
    formatter: &'static str,
}

#[derive(Serialize)]
struct Level {
    level: &'static str,
}

#[derive(Serialize)]
struct Root {
    level: &'static str,
    handlers: Vec<&'static str>,
}

pub(super) fn log_config() -> LogConfig {
    LogConfig {
        version: 1,
        formatters: BTreeMap::from([(
            "precise",
            Formatter {
                format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s",
            },
        )]),
        handlers: BTreeMap::from([(
            "console",
            Handler { class: "logging.StreamHandler", formatter: "precise" },
        )]),
        // Above INFO, synapse.storage.SQL logs access tokens.
        loggers: BTreeMap::from([("synapse.storage.SQL", Level { level: "INFO" })]),
        root: Root { level: "INFO", handlers: vec!["console"] },
        disable_existing_loggers: false,
    }
}
