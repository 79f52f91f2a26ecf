//! Assembles the Pingora server: one proxy service per configured listener, the health
//! checker and discovery in the background.

use std::path::PathBuf;
use std::sync::Arc;

use pingora::prelude::{background_service, Opt};
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

use crate::config::Settings;
use crate::discovery::{self, Discovery};
use crate::health::{self, HealthChecker};
use crate::metrics::Metrics;
use crate::proxy::{Frontend, Listener};
use crate::reload::Reloader;
use crate::state::{Router, Shared};

/// Process-level options that are not part of the configuration file.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Take the listening sockets over from a running ess-router (graceful upgrade).
    pub upgrade: bool,
    pub upgrade_sock: PathBuf,
    pub pid_file: PathBuf,
    /// Reload when the configuration file changes, not only on SIGHUP.
    pub watch_config: bool,
}

/// Check the listeners, run the first DNS and health rounds, then set up Pingora: the
/// sockets are taken (or, in an upgrade, received) only once the pools know their servers.
pub fn build(settings: Settings, process: &ProcessOptions) -> Result<Server, String> {
    let listeners = settings.listeners;
    // Pingora retries a taken address for 30 s and then serves without that listener: say
    // it now and exit instead. In an upgrade the sockets come from the running process.
    if !process.upgrade {
        for (key, addr) in listeners.by_key() {
            let Some(addr) = addr else { continue };
            std::net::TcpListener::bind(addr)
                .map_err(|e| format!("listeners.{key}: cannot listen on {addr}: {e}"))?;
        }
    }

    let conf = ServerConf {
        threads: if settings.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            settings.threads
        },
        // One single-threaded runtime per thread: no work-stealing wake-ups between
        // threads on every request.
        work_stealing: false,
        grace_period_seconds: Some(settings.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(settings.drain_timeout.as_secs()),
        upgrade_sock: process.upgrade_sock.display().to_string(),
        pid_file: process.pid_file.display().to_string(),
        ..ServerConf::default()
    };
    let config_path = settings.source.clone();
    let metrics = Arc::new(Metrics::new());
    let router = Router::new(settings, &metrics, None);
    discovery::apply_literals(&router);
    let shared = Shared::new(router, metrics);
    first_rounds(&shared)?;

    let opt = Opt {
        upgrade: process.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    for (listener, addr) in [
        (Listener::Synapse, listeners.synapse),
        (Listener::Blackhole, listeners.blackhole),
        (Listener::WellKnown, listeners.well_known),
        (Listener::Metrics, listeners.metrics),
        (Listener::Startup, listeners.startup),
    ] {
        let Some(addr) = addr else { continue };
        let frontend = Frontend::new(listener, shared.clone());
        let mut service = http_proxy_service_with_name(&conf, frontend, listener.frontend());
        service.add_tcp(&addr.to_string());
        tracing::info!(frontend = listener.frontend(), %addr, "listening");
        server.add_service(service);
    }

    server.add_service(background_service(
        "health checks",
        HealthChecker {
            shared: shared.clone(),
        },
    ));
    // Always running: a reload may bring pools given as DNS names.
    server.add_service(background_service(
        "discovery",
        Discovery {
            shared: Arc::clone(&shared),
        },
    ));
    server.add_service(background_service(
        "reload",
        Reloader {
            shared,
            path: config_path,
            watch: process.watch_config,
            listeners,
        },
    ));
    Ok(server)
}

/// The first DNS round, then the first health checks of the servers it found.
fn first_rounds(shared: &Shared) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime of the first health checks: {e}"))?;
    runtime.block_on(async {
        discovery::first_round(shared).await;
        health::first_round(shared).await;
    });
    Ok(())
}
