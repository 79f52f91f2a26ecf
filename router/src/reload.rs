//! Hot reload: on SIGHUP, or when the configuration file changes if asked, the file is
//! read and checked again; a valid one replaces the live state in one atomic swap (requests
//! in flight finish on the state they started with), an invalid one changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{ConfigError, Listeners, Settings};
use crate::discovery;
use crate::state::{Router, Shared};

/// How often a watched file is looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub struct Reloader {
    pub shared: Arc<Shared>,
    pub path: PathBuf,
    /// Reload when the file's contents change, not only on SIGHUP.
    pub watch: bool,
    /// The addresses bound at start: they cannot change without a restart or upgrade.
    pub listeners: Listeners,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by signal is off");
                return;
            }
        };
        let mut seen = fingerprint(&self.path);
        loop {
            let reason = tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangup.recv() => "SIGHUP",
                _ = tokio::time::sleep(WATCH_INTERVAL), if self.watch => {
                    let now = fingerprint(&self.path);
                    if now == seen {
                        continue;
                    }
                    "file changed"
                }
            };
            seen = fingerprint(&self.path);
            match reload(&self.shared, &self.path, &self.listeners) {
                Ok(()) => {
                    self.shared.metrics.reload(true);
                    tracing::info!(reason, config = %self.path.display(), "configuration reloaded");
                }
                Err(e) => {
                    self.shared.metrics.reload(false);
                    tracing::warn!(reason, error = %e, "reload refused, still serving the previous configuration");
                }
            }
        }
    }
}

/// Load `path` and, when valid, make it the live configuration.
pub fn reload(
    shared: &Shared,
    path: &std::path::Path,
    running: &Listeners,
) -> Result<(), ConfigError> {
    let settings = Settings::load(path)?;
    if settings.listeners != *running {
        tracing::warn!(
            "listener addresses changed; they apply after a restart or a graceful upgrade \
             (ess-router run --upgrade, then SIGQUIT to this process)"
        );
    }
    let previous = shared.router.load_full();
    let router = Router::new(settings, &shared.metrics, Some(&previous));
    discovery::apply_literals(&router);
    shared.router.store(Arc::new(router));
    Ok(())
}

/// What tells a changed file: its modification time, length and contents.
fn fingerprint(path: &std::path::Path) -> Option<(SystemTime, u64, u64)> {
    use std::hash::{Hash, Hasher};
    let meta = std::fs::metadata(path).ok()?;
    let contents = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    contents.hash(&mut hasher);
    Some((meta.modified().ok()?, meta.len(), hasher.finish()))
}
