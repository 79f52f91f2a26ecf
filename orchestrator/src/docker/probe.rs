//! Readiness probed from outside the container: HTTP or TCP to its address on the project
//! network, or a command of its own image run by exec. Distroless images (MAS, LiveKit) have
//! no shell for a Docker HEALTHCHECK.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{api, DockerError, Engine};
use super::overrides::Probe;

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    NotReady(String),
}

/// The container's address on `network`, from inspect.
pub async fn address(
    engine: &Engine,
    container: &str,
    network: &str,
) -> Result<Option<IpAddr>, DockerError> {
    let inspect = engine
        .docker
        .inspect_container(container, None)
        .await
        .map_err(api(format!("inspect container {container}")))?;
    Ok(inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .and_then(|ip| ip.parse().ok()))
}

/// Runs one probe against a container.
pub async fn probe_once(engine: &Engine, container: &str, network: &str, probe: &Probe) -> Outcome {
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(engine, container, network, probe));
    match result.await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::NotReady(format!(
            "{} timed out after {ATTEMPT_TIMEOUT:?}",
            describe(probe)
        )),
    }
}

/// How a probe reads in messages: `GET :8080/health`, `TCP :5432`, `exec pg_isready ...`.
pub fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Http { port, path } => format!("GET :{port}{path}"),
        Probe::Tcp { port } => format!("TCP :{port}"),
        Probe::Exec(cmd) => format!("exec {}", cmd.join(" ")),
    }
}

async fn attempt(engine: &Engine, container: &str, network: &str, probe: &Probe) -> Outcome {
    let what = describe(probe);
    let ip = match probe {
        Probe::Exec(_) => None,
        _ => match address(engine, container, network).await {
            Ok(Some(ip)) => Some(ip),
            Ok(None) => return Outcome::NotReady(format!("{what}: no address on {network} yet")),
            Err(e) => return Outcome::NotReady(format!("{what}: {e}")),
        },
    };
    match (probe, ip) {
        (Probe::Tcp { port }, Some(ip)) => {
            match TcpStream::connect(SocketAddr::new(ip, *port)).await {
                Ok(_) => Outcome::Ready,
                Err(e) => Outcome::NotReady(format!("{what}: {e}")),
            }
        }
        (Probe::Http { port, path }, Some(ip)) => http_get(SocketAddr::new(ip, *port), path)
            .await
            .map_or_else(
                |e| Outcome::NotReady(format!("{what}: {e}")),
                |status| {
                    if (200..300).contains(&status) {
                        Outcome::Ready
                    } else {
                        Outcome::NotReady(format!("{what}: HTTP {status}"))
                    }
                },
            ),
        (Probe::Exec(cmd), _) => match exec(engine, container, cmd).await {
            Ok((0, _)) => Outcome::Ready,
            Ok((code, output)) => {
                Outcome::NotReady(format!("{what}: exit code {code}: {}", last_line(&output)))
            }
            Err(e) => Outcome::NotReady(format!("{what}: {e}")),
        },
        _ => Outcome::NotReady(format!("{what}: no address")),
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// A minimal HTTP/1.1 GET: the status code of the answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let (status, _) = http_request(addr, "GET", path, None).await?;
    Ok(status)
}

/// A minimal HTTP/1.1 request with `Connection: close` (`Host` is the address unless
/// given): status code and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let host = host.map_or_else(|| addr.to_string(), str::to_owned);
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs a command in a container: exit code and combined output.
pub async fn exec(
    engine: &Engine,
    container: &str,
    cmd: &[String],
) -> Result<(i64, String), DockerError> {
    let docker = &engine.docker;
    let created = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(api(format!("exec in {container}")))?;
    let mut output = String::new();
    let started = docker
        .start_exec(&created.id, None::<StartExecOptions>)
        .await
        .map_err(api(format!("exec in {container}")))?;
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => output.push_str(&c.to_string()),
                Err(e) => return Err(api(format!("exec in {container}"))(e)),
            }
        }
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .map_err(api(format!("exec in {container}")))?;
    Ok((inspect.exit_code.unwrap_or(-1), output))
}

/// The last `lines` lines of a container's log.
pub async fn log_tail(engine: &Engine, container: &str, lines: usize) -> String {
    let mut stream = engine.docker.logs(
        container,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&chunk.to_string());
    }
    if text.trim().is_empty() {
        "(empty)".into()
    } else {
        text.trim_end().to_owned()
    }
}

/// Probes until ready, the container stops, or `timeout` passes.
pub async fn wait_ready(
    engine: &Engine,
    service: &str,
    container: &str,
    network: &str,
    probe: &Probe,
    timeout: Duration,
) -> Result<(), DockerError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let last = match probe_once(engine, container, network, probe).await {
            Outcome::Ready => return Ok(()),
            Outcome::NotReady(why) => why,
        };
        let inspect = engine
            .docker
            .inspect_container(container, None)
            .await
            .map_err(api(format!("inspect container {container}")))?;
        let state = inspect.state.unwrap_or_default();
        if state.running == Some(false) && state.restarting != Some(true) {
            return Err(DockerError::Exited {
                service: service.to_owned(),
                code: state.exit_code.unwrap_or(-1),
                logs: log_tail(engine, container, 20).await,
            });
        }
        if started.elapsed() >= timeout {
            return Err(DockerError::NotReady {
                service: service.to_owned(),
                seconds: timeout.as_secs(),
                probe: last,
                logs: log_tail(engine, container, 20).await,
            });
        }
        tokio::time::sleep(delay).await;
        // Each stage waits for its slowest service: a probe late by half a second would add
        // that to every stage of a cold `up`, so the interval stays short.
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
