//! The stand-in's listeners: binding, the HTTP/1.1 accept loops, and stopping on a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::answer::Standin;

/// What a listener serves besides /health and /_standin/*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The identity answer for every other request.
    Identity,
    /// Nothing else: 404, like a health-only port.
    Health,
}

/// Bind every address (all or none), then serve until SIGTERM or SIGINT.
pub async fn serve(standin: Arc<Standin>, addrs: Vec<(SocketAddr, Role)>) -> Result<(), String> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for (addr, role) in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot read the address bound for {addr}: {e}"))?;
        eprintln!("listening on {bound}");
        listeners.push((listener, role));
    }

    for (listener, role) in listeners {
        tokio::spawn(accept_loop(listener, role, Arc::clone(&standin)));
    }

    stop_signal()
        .await
        .map_err(|e| format!("cannot wait for signals: {e}"))
}

async fn accept_loop(listener: TcpListener, role: Role, standin: Arc<Standin>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new());

    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors under load: back off instead of spinning.
                eprintln!("ess-standin: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small answers would otherwise wait for Nagle and skew proxy latencies.
        let _ = stream.set_nodelay(true);

        let standin = Arc::clone(&standin);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| Arc::clone(&standin).answer(role, request)),
        );
        tokio::spawn(async move {
            // Clients dropping connections is routine in tests and benchmarks.
            let _ = connection.await;
        });
    }
}

async fn stop_signal() -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => Ok(()),
        interrupted = tokio::signal::ctrl_c() => interrupted,
    }
}
