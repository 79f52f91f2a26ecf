//! Log output: access lines raw on stdout (like HAProxy's `log stdout format raw`),
//! everything else on stderr. Both are written by background threads so a slow terminal or
//! pipe never blocks a request.

use std::sync::OnceLock;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::access_log;

static GUARD: OnceLock<WorkerGuard> = OnceLock::new();

/// Install the operational log's subscriber (`RUST_LOG` tunes it, default `info`) and start
/// the access log's writer. The filter's level is also the `log` bridge's limit, so
/// Pingora's per-request `trace!` records are dropped where they are made.
pub fn init() {
    let (stderr, guard) = tracing_appender::non_blocking(std::io::stderr());
    let operational = fmt::layer()
        .with_writer(stderr)
        .with_ansi(false)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let _ = tracing_subscriber::registry().with(operational).try_init();
    let _ = GUARD.set(guard);
    if let Err(e) = access_log::start() {
        tracing::error!(error = %e, "cannot start the access log writer; no access log");
    }
}
