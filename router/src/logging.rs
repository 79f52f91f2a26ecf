//! Log output: access lines raw on stdout (like HAProxy's `log stdout format raw`),
//! everything else on stderr. Both are written by a background thread so a slow terminal or
//! pipe never blocks a request.

use std::sync::OnceLock;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::access_log;

static GUARDS: OnceLock<[WorkerGuard; 2]> = OnceLock::new();

/// Install the subscriber; `RUST_LOG` tunes the operational log (default `info`). The
/// level hints matter: without them the `log` bridge would hand every one of Pingora's
/// per-request `trace!` records to the subscriber only to be dropped there.
pub fn init() {
    // Stdout is line-buffered: under it, every access line would be its own write(2). The
    // writer thread drains whatever lines are queued and flushes once per batch.
    let (stdout, stdout_guard) = tracing_appender::non_blocking(std::io::BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    ));
    let (stderr, stderr_guard) = tracing_appender::non_blocking(std::io::stderr());
    let access = fmt::layer()
        .with_writer(stdout)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_filter(
            filter_fn(|meta| meta.target() == access_log::TARGET)
                .with_max_level_hint(LevelFilter::INFO),
        );
    let operational = fmt::layer()
        .with_writer(stderr)
        .with_ansi(false)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_filter(
            filter_fn(|meta| meta.target() != access_log::TARGET)
                .with_max_level_hint(LevelFilter::INFO),
        );
    let _ = tracing_subscriber::registry()
        .with(access)
        .with(operational)
        .try_init();
    let _ = GUARDS.set([stdout_guard, stderr_guard]);
}
