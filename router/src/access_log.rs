//! One access-log line per request, in the shape of the chart's HAProxy `log-format` (so
//! existing greps such as `synapse-http-in synapse-main/main` keep working) or as JSON.
//!
//! Lines go to stdout in batches. Each worker thread formats its lines straight into a
//! buffer of its own; one writer thread takes the buffers every [`FLUSH_EVERY`] (sooner
//! when one grows large) and writes them out. A request therefore costs no channel send,
//! no wake-up of another thread and no system call for its log line, and a stdout that
//! cannot keep up costs dropped lines (counted, and reported on stderr), never a stalled
//! request: HAProxy's behaviour with `log stdout`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::AccessLogFormat;

/// How long a line waits at most before it reaches stdout.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A thread's buffer this large wakes the writer before its time.
const WAKE_AT: usize = 256 * 1024;
/// A thread's buffer this large takes no more lines until the writer has emptied it.
const MAX_PENDING: usize = 8 * 1024 * 1024;

/// One worker thread's lines not yet written.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The buffer the writer gave back, emptied: the next swap puts it in place, so that in
    /// steady state no batch allocates (a fresh buffer of a few hundred KiB per batch costs
    /// the allocator's page churn and the kernel's page faults).
    spare: Vec<u8>,
    dropped: u64,
}

struct Writer {
    /// Every thread's buffer. Locked when a thread logs its first line and by the writer.
    threads: Mutex<Vec<Arc<Mutex<Pending>>>>,
    thread: Thread,
}

static WRITER: OnceLock<Writer> = OnceLock::new();

thread_local! {
    /// This thread's buffer; its lock is contended only by the writer's swap.
    static PENDING: Arc<Mutex<Pending>> = register();
}

fn register() -> Arc<Mutex<Pending>> {
    let pending = Arc::new(Mutex::new(Pending::default()));
    if let Some(writer) = WRITER.get() {
        writer
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pending.clone());
    }
    pending
}

/// Start the writer thread. Lines emitted before this, or when it could not start, are
/// discarded.
pub fn start() -> std::io::Result<()> {
    if WRITER.get().is_some() {
        return Ok(());
    }
    let handle = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(|| {
            // Wait until the writer is published, then write until the process ends.
            let writer = loop {
                match WRITER.get() {
                    Some(writer) => break writer,
                    None => std::thread::park(),
                }
            };
            let mut out = std::io::stdout();
            let mut failed = false;
            loop {
                std::thread::park_timeout(FLUSH_EVERY);
                drain(writer, &mut out, &mut failed);
            }
        })?;
    let thread = handle.thread().clone();
    let _ = WRITER.set(Writer {
        threads: Mutex::new(Vec::new()),
        thread: thread.clone(),
    });
    thread.unpark();
    Ok(())
}

/// Write out every thread's lines now, from the calling thread: at exit, so the lines of
/// the last requests are not left in their buffers.
pub fn flush() {
    if let Some(writer) = WRITER.get() {
        drain(writer, &mut std::io::stdout(), &mut false);
    }
}

/// Write out every thread's lines; forget the buffers of threads that have ended.
fn drain(writer: &Writer, out: &mut impl std::io::Write, failed: &mut bool) {
    let buffers: Vec<Arc<Mutex<Pending>>> = {
        let mut threads = writer
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        threads.retain(|p| Arc::strong_count(p) > 1 || !lock(p).lines.is_empty());
        threads.clone()
    };
    let mut dropped = 0;
    for pending in buffers {
        let (mut lines, lost) = {
            let mut p = lock(&pending);
            if p.lines.is_empty() && p.dropped == 0 {
                continue;
            }
            let spare = std::mem::take(&mut p.spare);
            let lines = std::mem::replace(&mut p.lines, spare);
            (lines, std::mem::take(&mut p.dropped))
        };
        dropped += lost;
        if let Err(e) = out.write_all(&lines) {
            if !*failed {
                tracing::error!(error = %e, "cannot write the access log to stdout");
                *failed = true;
            }
        }
        // Kept for the next swap, unless a burst made it larger than a batch should be.
        if lines.capacity() <= 2 * WAKE_AT {
            lines.clear();
            lock(&pending).spare = lines;
        }
    }
    let _ = out.flush();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "access log lines dropped: stdout did not keep up with the requests"
        );
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

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
    /// Queue this request's line on the calling thread's buffer.
    pub fn emit(&self, format: AccessLogFormat) {
        let Some(writer) = WRITER.get() else { return };
        let wake = PENDING.with(|pending| {
            let mut p = lock(pending);
            if p.lines.len() >= MAX_PENDING {
                p.dropped += 1;
                return false;
            }
            let before = p.lines.len();
            self.write(format, &mut p.lines);
            before < WAKE_AT && p.lines.len() >= WAKE_AT
        });
        if wake {
            writer.thread.unpark();
        }
    }

    /// Append the line, newline included.
    fn write(&self, format: AccessLogFormat, out: &mut Vec<u8>) {
        match format {
            AccessLogFormat::Haproxy => self.write_haproxy(out),
            AccessLogFormat::Json => {
                let start = out.len();
                if serde_json::to_writer(&mut *out, self).is_err() {
                    // Only an unserialisable field could fail; leave no half line behind.
                    out.truncate(start);
                    return;
                }
            }
        }
        out.push(b'\n');
    }

    /// `client:port [time] frontend backend/server -1/-1/Tw/Tc/Tr/Ta status bytes - -
    /// tsc retries {host|xff|ua} "METHOD uri VERSION"`, written piece by piece: the
    /// formatting machinery of `write!` cost more than the rest of the router's phases.
    fn write_haproxy(&self, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        match self.client {
            Some(addr) => {
                write_ip(out, addr.ip());
                out.push(b':');
                out.extend_from_slice(num.format(addr.port()).as_bytes());
            }
            None => out.extend_from_slice(b"-:-"),
        }
        out.extend_from_slice(b" [");
        write_time(out, self.time);
        out.extend_from_slice(b"] ");
        for part in [
            self.frontend,
            " ",
            self.backend,
            "/",
            self.server,
            " -1/-1/",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        for (n, sep) in [
            (self.queue_ms, b'/'),
            (self.connect_ms, b'/'),
            (self.response_ms, b'/'),
            (self.total_ms, b' '),
        ] {
            out.extend_from_slice(num.format(n).as_bytes());
            out.push(sep);
        }
        out.extend_from_slice(num.format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(num.format(self.bytes).as_bytes());
        out.extend_from_slice(b" - - ");
        out.extend_from_slice(self.termination.as_bytes());
        out.extend_from_slice(b"-- ");
        out.extend_from_slice(num.format(self.retries).as_bytes());
        for part in [
            " {",
            clip(self.host, 32),
            "|",
            clip(self.x_forwarded_for, 64),
            "|",
            clip(self.user_agent, 200),
            "} \"",
            self.method,
            " ",
            self.uri,
            " ",
            self.version,
            "\"",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
    }

    #[cfg(test)]
    fn line(&self, format: AccessLogFormat) -> String {
        let mut out = Vec::new();
        self.write(format, &mut out);
        String::from_utf8(out).expect("utf-8")
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

/// An address as `Display` writes it; IPv4 without the formatting machinery.
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(num.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

thread_local! {
    /// The last second written by this thread, as `2026-12-04T05:00:21`: lines of the same
    /// second only add their milliseconds.
    static SECOND: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
}

/// RFC 3339 UTC with milliseconds, as `humantime::format_rfc3339_millis`.
fn write_time(out: &mut Vec<u8>, time: SystemTime) {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            text.clear();
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
            text.pop(); // the `Z`
            *cached = secs;
        }
        out.extend_from_slice(text);
    });
    let millis = since_epoch.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
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
        let line = entry.line(AccessLogFormat::Haproxy);
        let line = line.strip_suffix('\n').expect("one line");
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
            serde_json::from_str(&entry.line(AccessLogFormat::Json)).expect("parse");
        assert_eq!(json["server"], "main1");
        assert_eq!(json["status"], 200);
    }

    #[test]
    fn haproxy_lines_are_written_whole_with_every_field_in_place() {
        let at = |millis: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
        let mut entry = Entry {
            time: at(1_764_825_621_042),
            client: Some("192.0.2.1:5000".parse().expect("addr")),
            frontend: "synapse-http-in",
            backend: "synapse-federation-reader",
            server: "federation-reader2",
            queue_ms: 0,
            connect_ms: -1,
            response_ms: 17,
            total_ms: 1234,
            status: 429,
            bytes: 56,
            termination: "sQ",
            retries: 3,
            host: "matrix.example.com",
            x_forwarded_for: "198.51.100.7",
            user_agent: "Element/1.0",
            method: "GET",
            uri: "/_matrix/federation/v1/state_ids/!r:x?event_id=$e",
            version: "HTTP/1.1",
        };
        assert_eq!(
            entry.line(AccessLogFormat::Haproxy),
            "192.0.2.1:5000 [2025-12-04T05:20:21.042Z] synapse-http-in \
             synapse-federation-reader/federation-reader2 -1/-1/0/-1/17/1234 429 56 - - sQ-- 3 \
             {matrix.example.com|198.51.100.7|Element/1.0} \
             \"GET /_matrix/federation/v1/state_ids/!r:x?event_id=$e HTTP/1.1\"\n"
        );

        // The same second again, then the next one: only the fraction, then all of it moves.
        entry.time = at(1_764_825_621_999);
        entry.client = Some("[2001:db8::1]:443".parse().expect("addr"));
        assert!(entry
            .line(AccessLogFormat::Haproxy)
            .starts_with("2001:db8::1:443 [2025-12-04T05:20:21.999Z] "));
        entry.time = at(1_764_825_622_005);
        entry.client = None;
        assert!(entry
            .line(AccessLogFormat::Haproxy)
            .starts_with("-:- [2025-12-04T05:20:22.005Z] "));
    }

    #[test]
    fn the_writer_takes_every_threads_lines_and_forgets_ended_threads() {
        let writer = Writer {
            threads: Mutex::new(Vec::new()),
            thread: std::thread::current(),
        };
        let buffers: Vec<Arc<Mutex<Pending>>> = (0..2)
            .map(|i| {
                Arc::new(Mutex::new(Pending {
                    lines: format!("line from thread {i}\n").into_bytes(),
                    spare: Vec::new(),
                    dropped: i,
                }))
            })
            .collect();
        writer
            .threads
            .lock()
            .expect("lock")
            .extend(buffers.iter().cloned());
        let mut out = Vec::new();
        let mut failed = false;
        drain(&writer, &mut out, &mut failed);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "line from thread 0\nline from thread 1\n"
        );
        assert!(buffers.iter().all(|b| {
            let p = lock(b);
            p.lines.is_empty() && p.dropped == 0
        }));
        // The written buffers come back, empty, to be swapped in next time: steady state
        // allocates nothing.
        assert!(buffers.iter().all(|b| {
            let p = lock(b);
            p.spare.is_empty() && p.spare.capacity() >= "line from thread 0\n".len()
        }));

        // Both threads end: a buffer is forgotten once it has nothing left to write.
        drop(buffers);
        lock(&writer.threads.lock().expect("lock")[0])
            .lines
            .extend_from_slice(b"late line\n");
        let mut out = Vec::new();
        drain(&writer, &mut out, &mut failed);
        assert_eq!(out, b"late line\n");
        drain(&writer, &mut Vec::new(), &mut failed);
        assert!(writer.threads.lock().expect("lock").is_empty());
        assert!(!failed);
    }
}
