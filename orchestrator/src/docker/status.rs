//! `essctl status`: per service, its container, state, readiness (probed now), image and
//! published ports.

use super::client::{api, DockerError, Engine};
use super::plan::existing;
use super::probe::{probe_once, Outcome};
use super::spec::Desired;

/// One row of the status table.
#[derive(Debug, Clone)]
pub struct Row {
    pub service: String,
    pub container: String,
    pub state: String,
    pub ready: String,
    pub image: String,
    pub ports: String,
}

pub async fn status(engine: &Engine, desired: &Desired) -> Result<Vec<Row>, DockerError> {
    let actual = existing(engine, &desired.project).await?;
    let mut rows = Vec::new();
    for spec in &desired.containers {
        let Some(c) = actual.iter().find(|c| c.name == spec.container) else {
            rows.push(Row {
                service: spec.service.clone(),
                container: "-".into(),
                state: "absent".into(),
                ready: "-".into(),
                image: spec.image.clone(),
                ports: "-".into(),
            });
            continue;
        };
        let ready = if c.running {
            match probe_once(engine, &c.name, &desired.network, &spec.probe).await {
                Outcome::Ready => "ready".to_string(),
                Outcome::NotReady(why) => format!("not ready ({why})"),
            }
        } else {
            "-".into()
        };
        rows.push(Row {
            service: spec.service.clone(),
            container: c.name.clone(),
            state: c.state.clone(),
            ready,
            image: c.image.clone(),
            ports: ports(engine, &c.name).await?,
        });
    }
    for c in actual
        .iter()
        .filter(|c| !desired.containers.iter().any(|s| s.container == c.name))
    {
        rows.push(Row {
            service: c.service.clone(),
            container: c.name.clone(),
            state: format!("{} (not wanted)", c.state),
            ready: "-".into(),
            image: c.image.clone(),
            ports: "-".into(),
        });
    }
    Ok(rows)
}

/// Published ports as `host:port->port/proto`, comma separated; `-` for none.
async fn ports(engine: &Engine, container: &str) -> Result<String, DockerError> {
    let inspect = engine
        .docker
        .inspect_container(container, None)
        .await
        .map_err(api(format!("inspect {container}")))?;
    let mut list: Vec<String> = inspect
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(port, bindings)| {
            bindings.unwrap_or_default().into_iter().map(move |b| {
                format!(
                    "{}:{}->{port}",
                    b.host_ip.unwrap_or_default(),
                    b.host_port.unwrap_or_default()
                )
            })
        })
        .collect();
    list.sort();
    Ok(if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    })
}

/// Rows as aligned columns, a header first.
pub fn table(rows: &[Row]) -> Vec<String> {
    let header = Row {
        service: "SERVICE".into(),
        container: "CONTAINER".into(),
        state: "STATE".into(),
        ready: "READY".into(),
        image: "IMAGE".into(),
        ports: "PORTS".into(),
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).len()).max().unwrap_or(0);
    let (w1, w2, w3, w4, w5) = (
        width(|r| &r.service),
        width(|r| &r.container),
        width(|r| &r.state),
        width(|r| &r.ready),
        width(|r| &r.image),
    );
    all.iter()
        .map(|r| {
            format!(
                "{:w1$}  {:w2$}  {:w3$}  {:w4$}  {:w5$}  {}",
                r.service, r.container, r.state, r.ready, r.image, r.ports
            )
        })
        .collect()
}
