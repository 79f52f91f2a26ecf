//! `essctl verify`: the checks an operator runs by hand after a deployment, one line each:
//! the router's readiness and metrics, the well-known documents, the client versions
//! through the router, and `mas-cli doctor` in the MAS container.

use std::net::SocketAddr;

use super::client::Engine;
use super::probe::{address, exec, http_request};
use super::spec::{container_name, Desired};
use crate::deployment::Deployment;
use crate::stack;

/// One check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub result: Result<String, String>,
}

impl Check {
    pub fn line(&self) -> String {
        match &self.result {
            Ok(detail) => format!("ok    {}: {detail}", self.name),
            Err(detail) => format!("FAIL  {}: {detail}", self.name),
        }
    }
}

async fn get(addr: SocketAddr, path: &str, host: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, Some(host))
        .await
        .map_err(|e| format!("GET {path}: {e}"))
}

/// A 200 answer whose JSON body has `key` at the top level.
async fn json_with(addr: SocketAddr, path: &str, host: &str, key: &str) -> Result<String, String> {
    let (status, body) = get(addr, path, host).await?;
    if status != 200 {
        return Err(format!("GET {path}: HTTP {status}"));
    }
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("GET {path}: not JSON ({e})"))?;
    match json.get(key) {
        Some(value) => Ok(format!("{key} = {value}")),
        None => Err(format!("GET {path}: no {key:?} in the answer")),
    }
}

pub async fn verify(engine: &Engine, d: &Deployment, desired: &Desired) -> Vec<Check> {
    let router = container_name(&desired.project, stack::ROUTER);
    let ip = match address(engine, &router, &desired.network).await {
        Ok(Some(ip)) => ip,
        Ok(None) => {
            return vec![Check {
                name: "router",
                result: Err(format!("{router} has no address on {}", desired.network)),
            }]
        }
        Err(e) => {
            return vec![Check {
                name: "router",
                result: Err(e.to_string()),
            }]
        }
    };
    let at = |port| SocketAddr::new(ip, port);
    let synapse_host = d.hosts.synapse.as_str();
    let server_name = d.server_name.as_str();
    let mut checks = Vec::new();

    let ready = match get(
        at(stack::ROUTER_STARTUP_PORT),
        "/synapse_ready",
        synapse_host,
    )
    .await
    {
        Ok((200, _)) => Ok("/synapse_ready answers 200".into()),
        Ok((status, _)) => Err(format!("/synapse_ready answers {status}")),
        Err(e) => Err(e),
    };
    checks.push(Check {
        name: "router readiness",
        result: ready,
    });

    let metrics = match get(at(stack::ROUTER_METRICS_PORT), "/metrics", synapse_host).await {
        Ok((200, body)) => {
            let series = body.lines().filter(|l| !l.starts_with('#')).count();
            Ok(format!("{series} series"))
        }
        Ok((status, _)) => Err(format!("/metrics answers {status}")),
        Err(e) => Err(e),
    };
    checks.push(Check {
        name: "router metrics",
        result: metrics,
    });

    checks.push(Check {
        name: "client versions",
        result: json_with(
            at(stack::ROUTER_SYNAPSE_PORT),
            "/_matrix/client/versions",
            synapse_host,
            "versions",
        )
        .await,
    });
    checks.push(Check {
        name: "well-known server",
        result: json_with(
            at(stack::ROUTER_WELL_KNOWN_PORT),
            "/.well-known/matrix/server",
            server_name,
            "m.server",
        )
        .await,
    });
    checks.push(Check {
        name: "well-known client",
        result: json_with(
            at(stack::ROUTER_WELL_KNOWN_PORT),
            "/.well-known/matrix/client",
            server_name,
            "m.homeserver",
        )
        .await,
    });

    let mas = container_name(&desired.project, stack::MAS);
    let cmd = ["mas-cli", "doctor", "--config", "/conf/config.yaml"].map(String::from);
    let doctor = match exec(engine, &mas, &cmd).await {
        Ok((0, _)) => Ok("no problem found".into()),
        Ok((code, output)) => Err(format!(
            "exit code {code}: {}",
            output
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        )),
        Err(e) => Err(e.to_string()),
    };
    checks.push(Check {
        name: "mas-cli doctor",
        result: doctor,
    });
    checks
}
