//! What the stand-in answers: /health, its own controls under /_standin/, and for anything
//! else the identity answer describing the request it received.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{http, Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::controls::{Controls, PADDED_LEN};
use crate::serve::Role;

type Answer = Response<Full<Bytes>>;

/// One stand-in process: its name, health switch and identity request counters, shared by
/// all of its listeners.
pub struct Standin {
    name: String,
    /// Set in bench mode: answered instead of the identity JSON.
    fixed_body: Option<Bytes>,
    healthy: AtomicBool,
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Standin {
    pub fn new(name: String, fixed_body: bool) -> Self {
        let fixed_body = fixed_body.then(|| Bytes::from(json!({ "server": name }).to_string()));
        Standin {
            name,
            fixed_body,
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        }
    }

    pub async fn answer(
        self: std::sync::Arc<Self>,
        role: Role,
        request: Request<Incoming>,
    ) -> Result<Answer, Infallible> {
        let path = request.uri().path();
        if path == "/health" {
            return Ok(self.health());
        }
        if let Some(control) = path.strip_prefix("/_standin/") {
            return Ok(self.control(request.method(), control));
        }
        Ok(match role {
            Role::Identity => self.identity(request).await,
            Role::Health => text(StatusCode::NOT_FOUND, "not found: health listener\n"),
        })
    }

    fn health(&self) -> Answer {
        if self.healthy.load(Ordering::Relaxed) {
            text(StatusCode::OK, "OK")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
        }
    }

    fn control(&self, method: &Method, control: &str) -> Answer {
        let healthy = match (method, control) {
            (&Method::POST, "health/fail") => false,
            (&Method::POST, "health/pass") => true,
            (&Method::GET, "stats") => {
                let stats = json!({
                    "requests": self.requests.load(Ordering::Relaxed),
                    "in_flight": self.in_flight.load(Ordering::Relaxed),
                    "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
                });
                return json_answer(StatusCode::OK, stats.to_string().into());
            }
            (_, "health/fail" | "health/pass" | "stats") => {
                return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            }
            _ => return text(StatusCode::NOT_FOUND, "unknown stand-in control\n"),
        };
        self.healthy.store(healthy, Ordering::Relaxed);
        json_answer(
            StatusCode::OK,
            json!({ "healthy": healthy }).to_string().into(),
        )
    }

    async fn identity(&self, request: Request<Incoming>) -> Answer {
        let _slot = InFlight::enter(self);

        let controls = match Controls::from_headers(request.headers()) {
            Ok(controls) => controls,
            Err(message) => return text(StatusCode::BAD_REQUEST, &format!("{message}\n")),
        };

        let (parts, body) = request.into_parts();
        let Ok(body_len) = count_body(body).await else {
            return text(StatusCode::BAD_REQUEST, "cannot read the request body\n");
        };

        if let Some(delay) = controls.delay {
            tokio::time::sleep(delay).await;
        }

        let body = match &self.fixed_body {
            Some(fixed) => fixed.clone(),
            None => describe(&self.name, &parts, body_len),
        };
        shaped(controls, body)
    }
}

/// Counts an identity request as in flight until dropped, even when the client goes away
/// during a delay.
struct InFlight<'a>(&'a Standin);

impl<'a> InFlight<'a> {
    fn enter(standin: &'a Standin) -> Self {
        standin.requests.fetch_add(1, Ordering::Relaxed);
        let now = standin.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        standin.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(standin)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn count_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len() as u64;
        }
    }
    Ok(len)
}

/// The identity JSON: who answered and what arrived; a repeated header's values keep their
/// order.
fn describe(name: &str, request: &http::request::Parts, body_len: u64) -> Bytes {
    let mut headers = Map::new();
    for header in request.headers.keys() {
        let mut values: Vec<Value> = request
            .headers
            .get_all(header)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into())
            .collect();
        let value = if values.len() == 1 {
            values.swap_remove(0)
        } else {
            Value::Array(values)
        };
        headers.insert(header.as_str().to_owned(), value);
    }

    json!({
        "server": name,
        "method": request.method.as_str(),
        "path": request.uri.path(),
        "query": request.uri.query(),
        "headers": headers,
        "body_len": body_len,
    })
    .to_string()
    .into()
}

/// Apply the request's controls to the identity answer.
fn shaped(controls: Controls, body: Bytes) -> Answer {
    let body = match controls.status {
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED => Bytes::new(),
        _ if controls.content_type.is_some() && body.len() < PADDED_LEN => {
            // Trailing spaces keep a JSON body parseable.
            let mut padded = body.to_vec();
            padded.resize(PADDED_LEN, b' ');
            padded.into()
        }
        _ => body,
    };

    let content_type = controls
        .content_type
        .unwrap_or(HeaderValue::from_static("application/json"));
    let mut answer = json_answer(controls.status, body);
    answer.headers_mut().insert(CONTENT_TYPE, content_type);
    if let Some(encoding) = controls.content_encoding {
        answer.headers_mut().insert(CONTENT_ENCODING, encoding);
    }
    answer
}

fn json_answer(status: StatusCode, body: Bytes) -> Answer {
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

fn text(status: StatusCode, body: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    answer
}
