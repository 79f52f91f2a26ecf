//! The router's listeners as Pingora proxy services. Port 8008 routes to Synapse; the
//! others answer by themselves. All share one request context, one error-to-answer path
//! and one access log.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT,
};
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::ResponseCompression;
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType, Result};

use prometheus::IntCounter;

use crate::access_log::{self, Entry};
use crate::answers::{self, Answer};
use crate::metrics::class_index;
use crate::pool::{Pool, Slot, Unavailable, Upstream};
use crate::request;
use crate::state::{Router, Shared};

/// Which listener a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Synapse,
    Blackhole,
    WellKnown,
    Metrics,
    Startup,
}

impl Listener {
    /// The chart's frontend names, as they appear in the access log.
    pub fn frontend(self) -> &'static str {
        match self {
            Listener::Synapse => "synapse-http-in",
            Listener::Blackhole => "http-blackhole",
            Listener::WellKnown => "well-known-in",
            Listener::Metrics => "prometheus",
            Listener::Startup => "startup",
        }
    }

    /// The chart does not log its monitoring frontends.
    fn logged(self) -> bool {
        !matches!(self, Listener::Metrics | Listener::Startup)
    }
}

pub struct Frontend {
    listener: Listener,
    shared: Arc<Shared>,
    /// Answers this frontend makes by itself, by status class.
    own_answers: [IntCounter; 6],
}

impl Frontend {
    pub fn new(listener: Listener, shared: Arc<Shared>) -> Frontend {
        Frontend {
            own_answers: shared.metrics.frontend(listener.frontend()),
            listener,
            shared,
        }
    }
}

/// Compression level for the content types the chart compresses.
const GZIP_LEVEL: u32 = 6;
const COMPRESSIBLE: [&str; 5] = [
    "text/plain",
    "text/html",
    "text/xml",
    "application/json",
    "text/css",
];
/// Header names looked up on every request, resolved once: a lookup by `&str` parses the
/// name each time.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

const RENDEZVOUS_PREFIXES: [&str; 2] = [
    "/_matrix/client/unstable/org.matrix.msc4108/rendezvous",
    "/_synapse/client/rendezvous",
];

/// What the router knows about one request, across its phases.
pub struct Ctx {
    started: Instant,
    time: SystemTime,
    /// The configuration this request runs under, taken once at its start.
    router: Option<Arc<Router>>,
    /// The TCP peer, read from the session once.
    peer: Option<SocketAddr>,
    client: Option<IpAddr>,
    pool: Option<Arc<Pool>>,
    balance_key: Vec<u8>,
    access_token: Vec<u8>,
    https: bool,
    slot: Option<Slot>,
    connect_failures: u32,
    last_failed: Option<SocketAddr>,
    queue_time: Duration,
    peer_chosen: Option<Instant>,
    connect_time: Option<Duration>,
    response_time: Option<Duration>,
    /// Set when the router answered by itself: the termination state for the log.
    generated: Option<&'static str>,
    /// The server the request went to last, for the log.
    upstream: Option<Arc<Upstream>>,
}

#[async_trait]
impl ProxyHttp for Frontend {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            time: SystemTime::now(),
            router: None,
            peer: None,
            client: None,
            pool: None,
            balance_key: Vec::new(),
            access_token: Vec::new(),
            https: true,
            slot: None,
            connect_failures: 0,
            last_failed: None,
            queue_time: Duration::ZERO,
            peer_chosen: None,
            connect_time: None,
            response_time: None,
            generated: None,
            upstream: None,
        }
    }

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        // Off by default; turned on per response for Synapse's compressible types.
        modules
            .add_module(pingora::modules::http::compression::ResponseCompressionBuilder::enable(0));
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // The compression module reads Accept-Encoding only while enabled, and runs right
        // after this phase: enable it for Synapse traffic, decide per response later.
        if self.listener == Listener::Synapse {
            set_gzip(session, GZIP_LEVEL);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let router = self.shared.router.load_full();
        session.set_keepalive(Some(router.settings.timeouts.client_idle.as_secs()));
        let answer = match self.listener {
            Listener::Synapse => self.route(session, ctx, &router),
            Listener::Blackhole => Some(Answer::Blocked),
            Listener::WellKnown => Some(well_known(session.req_header(), &router)),
            Listener::Metrics => Some(self.metrics_answer(session.req_header(), &router)),
            Listener::Startup => Some(startup(session.req_header(), &router)),
        };
        let answered = match answer {
            Some(answer) => {
                ctx.generated = Some(answer.termination());
                set_gzip(session, 0);
                answer.send(session).await?;
                true
            }
            None => false,
        };
        ctx.router = Some(router);
        Ok(answered)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let (Some(pool), Some(router)) = (ctx.pool.clone(), ctx.router.clone()) else {
            return Err(Error::explain(ErrorType::InternalError, "no pool chosen"));
        };
        // A retry gives back the place it held; the last of the three retries goes to
        // another server when there is one (HAProxy's `option redispatch`).
        ctx.slot = None;
        let avoid = if ctx.connect_failures >= 3 {
            ctx.last_failed
        } else {
            None
        };
        let (slot, waited) = pool.acquire(&ctx.balance_key, avoid).await;
        ctx.queue_time += waited;
        pool.metrics.queue_time.observe(waited.as_secs_f64());
        let slot = slot.map_err(|why| {
            let reason = match why {
                Unavailable::NoLiveServer => answers::NO_LIVE_SERVER,
                Unavailable::QueueTimeout => answers::QUEUE_TIMEOUT,
            };
            Error::explain(ErrorType::Custom(reason), pool.backend.clone())
        })?;

        let upstream = &slot.member.upstream;
        let mut peer = HttpPeer::new(upstream.addr, false, String::new());
        let timeouts = &router.settings.timeouts;
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(pool.server_timeout);
        peer.options.write_timeout = Some(pool.server_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        ctx.upstream = Some(upstream.clone());
        ctx.peer_chosen = Some(Instant::now());
        ctx.slot = Some(slot);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // HAProxy's `retries 3`: three more attempts after the first connect failure.
        ctx.connect_failures += 1;
        ctx.last_failed = peer.address().as_inet().copied();
        e.set_retry(ctx.connect_failures <= 3);
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.connect_time = ctx.peer_chosen.map(|t| t.elapsed());
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if !upstream.headers.contains_key(&X_FORWARDED_PROTO) {
            upstream.insert_header("X-Forwarded-Proto", HeaderValue::from_static("https"))?;
        }
        // Always set, so a client cannot pick its worker by sending its own.
        let token = if ctx.access_token.is_empty() {
            HeaderValue::from_static("")
        } else {
            HeaderValue::from_bytes(&ctx.access_token)
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "access token"))?
        };
        upstream.insert_header("X-Access-Token", token)?;

        // `Forwarded: proto=http;for=<client>`, and the peer in `X-Forwarded-For` unless
        // the client sent one; when the peer is the client, both share one buffer.
        let forwarded = ctx.client.map(forwarded_element);
        if !upstream.headers.contains_key(&X_FORWARDED_FOR) {
            let peer = peer(session, ctx).map(|a| a.ip());
            let address = match (peer, &forwarded) {
                (Some(peer), Some((_, client))) if Some(peer) == ctx.client => Some(client.clone()),
                (Some(peer), _) => {
                    let mut text = Vec::with_capacity(39);
                    access_log::write_ip(&mut text, peer);
                    Some(Bytes::from(text))
                }
                (None, _) => None,
            };
            if let Some(address) = address {
                upstream.insert_header("X-Forwarded-For", header_value(address)?)?;
            }
        }
        if let Some((element, _)) = forwarded {
            upstream.append_header("Forwarded", header_value(element)?)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.response_time = ctx.peer_chosen.map(|t| t.elapsed());
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Only responses that came from Synapse pass here; generated ones are written
        // directly.
        if ctx.https {
            response.append_header(
                "Strict-Transport-Security",
                HeaderValue::from_static("max-age=31536000"),
            )?;
        }
        response.insert_header(
            "Permissions-Policy",
            HeaderValue::from_static("interest-cohort=()"),
        )?;
        if !compressible(response) {
            set_gzip(session, 0);
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let answer = Answer::from_error(e);
        ctx.generated = Some(Answer::termination_of(e));
        let code = match e.etype() {
            // The client went away: nobody to answer.
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
                if e.esource() == &pingora::ErrorSource::Downstream =>
            {
                0
            }
            _ => {
                set_gzip(session, 0);
                answer.send(session).await.unwrap_or(0)
            }
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        // The router's own refusals are in the access log already.
        matches!(
            e.etype(),
            ErrorType::Custom(answers::NO_LIVE_SERVER) | ErrorType::Custom(answers::QUEUE_TIMEOUT)
        )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        match (&ctx.pool, ctx.slot.take()) {
            (Some(pool), slot) => {
                pool.metrics.response(status);
                if ctx.generated == Some("sC") {
                    pool.metrics.refused_connect.inc();
                }
                if let Some(slot) = slot {
                    slot.member.metrics.response(status);
                    if let Some(t) = ctx.response_time {
                        slot.member.metrics.latency.observe(t.as_secs_f64());
                    }
                    // The server's place is freed here, before the log line is written.
                }
            }
            (None, _) => self.own_answers[class_index(status)].inc(),
        }
        if !self.listener.logged() {
            return;
        }
        let format = match &ctx.router {
            Some(router) => router.settings.access_log,
            None => return,
        };
        let client = peer(session, ctx);
        let req = session.req_header();
        let header = |name: &HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let frontend = self.listener.frontend();
        let backend = match (&ctx.pool, ctx.generated) {
            (Some(pool), _) => pool.backend.as_str(),
            (None, _) => frontend,
        };
        let entry = Entry {
            time: ctx.time,
            client: client.map(|a| SocketAddr::new(ctx.client.unwrap_or(a.ip()), a.port())),
            frontend,
            backend,
            server: ctx.upstream.as_ref().map_or("<NOSRV>", |u| u.name.as_str()),
            queue_ms: access_log::millis(ctx.pool.as_ref().map(|_| ctx.queue_time)),
            connect_ms: access_log::millis(ctx.connect_time),
            response_ms: access_log::millis(ctx.response_time),
            total_ms: access_log::millis(Some(ctx.started.elapsed())),
            status,
            bytes: session.body_bytes_sent(),
            termination: ctx.generated.unwrap_or("--"),
            // The failure after the last retry is not itself retried.
            retries: ctx.connect_failures.min(3),
            host: header(&HOST),
            x_forwarded_for: header(&X_FORWARDED_FOR),
            user_agent: header(&USER_AGENT),
            method: req.method.as_str(),
            uri: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            version: version(req.version),
        };
        entry.emit(format);
    }
}

impl Frontend {
    /// Port 8008: the chart's `synapse-http-in` rules, in its order. Returns an answer
    /// when the router answers by itself; otherwise the pool is chosen in `ctx`.
    fn route<'r>(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        router: &'r Router,
    ) -> Option<Answer<'r>> {
        let settings = &router.settings;
        let req = session.req_header();
        let peer = peer(session, ctx)
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let client = request::client_address(
            peer,
            req.headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes()),
            &settings.trusted_proxies,
        );
        ctx.client = Some(client);
        let path = req.uri.path();
        let query = req.uri.query();

        if let Some(allow) = &settings.admin_allow {
            if request::is_admin_path(path) && !allow.iter().any(|net| net.contains(&client)) {
                return Some(Answer::AdminForbidden);
            }
        }

        ctx.https = req
            .headers
            .get(&X_FORWARDED_PROTO)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        ctx.access_token =
            request::access_token(query, req.headers.get(AUTHORIZATION).map(|v| v.as_bytes()))
                .to_vec();

        if req.method == Method::OPTIONS {
            let rendezvous =
                settings.mas && RENDEZVOUS_PREFIXES.iter().any(|p| path.starts_with(p));
            return Some(Answer::Preflight { rendezvous });
        }
        if path == "/_synapse/ess/version" {
            return Some(Answer::EssVersion(&settings.ess_version));
        }

        let is_get = req.method == Method::GET || req.method == Method::HEAD;
        let mut index = router.routes.route(is_get, path);
        if let Some(initial) = router.routes.initial_sync(path, query) {
            if router.pools[initial].has_live_server() {
                index = initial;
            }
        }
        let mut pool = &router.pools[index];
        if index != 0 && pool.fallback_to_main && !pool.has_live_server() {
            pool = &router.main_failover;
        }

        let uri = req.uri.path_and_query().map_or(path, |pq| pq.as_str());
        ctx.balance_key =
            request::balance_key(pool.balance, path, uri, &ctx.access_token, client).into_owned();
        ctx.pool = Some(pool.clone());
        None
    }
}

/// Port 8010: the well-known documents, the base-domain redirect, and nothing else.
fn well_known<'r>(req: &RequestHeader, router: &'r Router) -> Answer<'r> {
    let wk = &router.settings.well_known;
    if matches!(req.method, Method::DELETE | Method::POST | Method::PUT) {
        return Answer::Status(405);
    }
    let doc = match req.uri.path() {
        "/.well-known/matrix/server" => Some(&wk.server),
        "/.well-known/matrix/client" => Some(&wk.client),
        "/.well-known/matrix/support" => Some(&wk.support),
        _ => None,
    };
    match (doc, &wk.redirect) {
        (Some(Some(doc)), _) => Answer::WellKnown(doc, &wk.headers),
        // A well-known path with no document configured: the chart serves an empty file.
        (Some(None), _) => Answer::Status(404),
        (None, Some(location)) => Answer::Redirect(location),
        (None, None) => Answer::Status(404),
    }
}

impl Frontend {
    /// Port 8405: Prometheus metrics and liveness (the chart's `monitor-uri
    /// /haproxy_test`).
    fn metrics_answer(&self, req: &RequestHeader, router: &Router) -> Answer<'static> {
        match req.uri.path() {
            "/haproxy_test" => Answer::Text(200, "text/plain", Bytes::new()),
            "/metrics" => Answer::Text(
                200,
                "text/plain; version=0.0.4",
                Bytes::from(self.shared.metrics.render(router)),
            ),
            _ => Answer::Status(404),
        }
    }
}

/// Port 8406: `/synapse_ready`, 200 once Synapse can take traffic.
fn startup<'r>(req: &RequestHeader, router: &'r Router) -> Answer<'r> {
    if req.uri.path() != "/synapse_ready" {
        return Answer::Status(404);
    }
    if router.synapse_ready() {
        Answer::Text(200, "text/plain", Bytes::from_static(b"ready\n"))
    } else {
        Answer::Text(503, "text/plain", Bytes::from_static(b"not ready\n"))
    }
}

/// Level 0 turns the downstream compression module off for this response.
fn set_gzip(session: &mut Session, level: u32) {
    if let Some(compression) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        compression.adjust_level(level);
    }
}

/// The chart's `compression type` list, for responses not encoded already.
fn compressible(response: &ResponseHeader) -> bool {
    if response.headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let Some(content_type) = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    COMPRESSIBLE
        .iter()
        .any(|t| t.eq_ignore_ascii_case(media_type))
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The client connection's address, looked up on the first call only.
fn peer(session: &Session, ctx: &mut Ctx) -> Option<SocketAddr> {
    if ctx.peer.is_none() {
        ctx.peer = session.client_addr().and_then(|a| a.as_inet()).copied();
    }
    ctx.peer
}

/// The RFC 7239 element for `client` (IPv6 quoted and bracketed), and the slice of it that
/// is the bare address.
fn forwarded_element(client: IpAddr) -> (Bytes, Bytes) {
    let mut text = Vec::with_capacity(64);
    text.extend_from_slice(b"proto=http;for=");
    let quoted = client.is_ipv6();
    if quoted {
        text.extend_from_slice(b"\"[");
    }
    let start = text.len();
    access_log::write_ip(&mut text, client);
    let end = text.len();
    if quoted {
        text.extend_from_slice(b"]\"");
    }
    let element = Bytes::from(text);
    let address = element.slice(start..end);
    (element, address)
}

fn header_value(bytes: Bytes) -> Result<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "forwarding header value"))
}
