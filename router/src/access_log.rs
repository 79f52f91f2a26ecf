//! One access-log line per request, in the shape of the chart's HAProxy `log-format` (so
//! existing greps such as `synapse-http-in synapse-main/main` keep working) or as JSON.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::AccessLogFormat;

/// Target of access-log events; the logging setup sends it to stdout, one raw line each.
pub const TARGET: &str = "access";

/// What one request did, collected over its phases.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub client: Option<SocketAddr>,
    pub frontend: &'a str,
    /// `synapse-<pool>`, or the frontend name for answers the router made itself.
    pub backend: &'a str,
    /// `<pool><n>`, or `<NOSRV>` when no server was used.
    pub server: &'a str,
    /// Milliseconds; -1 for a step that did not happen.
    pub queue_ms: i64,
    pub connect_ms: i64,
    pub response_ms: i64,
    pub total_ms: i64,
    pub status: u16,
    pub bytes: usize,
    /// HAProxy's termination state: two letters, `--` for a normal end.
    pub termination: &'a str,
    pub retries: u32,
    pub host: &'a str,
    pub x_forwarded_for: &'a str,
    pub user_agent: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub version: &'a str,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

pub fn millis(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

impl Entry<'_> {
    pub fn emit(&self, format: AccessLogFormat) {
        let line = match format {
            AccessLogFormat::Haproxy => self.haproxy_line(),
            AccessLogFormat::Json => serde_json::to_string(self).unwrap_or_default(),
        };
        tracing::info!(target: TARGET, "{line}");
    }

    /// `client:port [time] frontend backend/server -1/-1/Tw/Tc/Tr/Ta status bytes - -
    /// tsc retries {host|xff|ua} "METHOD uri VERSION"`
    pub fn haproxy_line(&self) -> String {
        let mut line = String::with_capacity(256);
        match self.client {
            Some(addr) => {
                let _ = write!(line, "{}:{}", addr.ip(), addr.port());
            }
            None => line.push_str("-:-"),
        }
        let _ = write!(
            line,
            " [{}] {} {}/{} -1/-1/{}/{}/{}/{} {} {} - - {}-- {} {{{}|{}|{}}} \"{} {} {}\"",
            humantime::format_rfc3339_millis(self.time),
            self.frontend,
            self.backend,
            self.server,
            self.queue_ms,
            self.connect_ms,
            self.response_ms,
            self.total_ms,
            self.status,
            self.bytes,
            self.termination,
            self.retries,
            clip(self.host, 32),
            clip(self.x_forwarded_for, 64),
            clip(self.user_agent, 200),
            self.method,
            self.uri,
            self.version,
        );
        line
    }
}

/// HAProxy captures at most this many bytes of a header.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_line_names_frontend_backend_and_server_like_the_chart() {
        let entry = Entry {
            time: SystemTime::UNIX_EPOCH,
            client: Some("192.0.2.1:5000".parse().expect("addr")),
            frontend: "synapse-http-in",
            backend: "synapse-main",
            server: "main1",
            queue_ms: 0,
            connect_ms: 1,
            response_ms: 2,
            total_ms: 3,
            status: 200,
            bytes: 42,
            termination: "--",
            retries: 0,
            host: "matrix.example.com",
            x_forwarded_for: "",
            user_agent: "curl",
            method: "GET",
            uri: "/_matrix/client/versions",
            version: "HTTP/1.1",
        };
        let line = entry.haproxy_line();
        assert!(
            line.contains(" synapse-http-in synapse-main/main1 "),
            "{line}"
        );
        assert!(
            line.starts_with("192.0.2.1:5000 [1970-01-01T00:00:00.000Z]"),
            "{line}"
        );
        assert!(
            line.ends_with(r#"{matrix.example.com||curl} "GET /_matrix/client/versions HTTP/1.1""#),
            "{line}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&entry).expect("json")).expect("parse");
        assert_eq!(json["server"], "main1");
        assert_eq!(json["status"], 200);
    }
}
