//! Facts taken from a request before routing: who the client is, its access token, whether
//! it aims at the admin API, and the balance key of its pool.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use std::sync::LazyLock;

use crate::routes::query_param;
use crate::worker::Balance;

/// The client address: the TCP peer, or the last `X-Forwarded-For` address when the peer
/// is a trusted proxy.
pub fn client_address(peer: IpAddr, xff: Option<&[u8]>, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    xff.and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| parse_forwarded_ip(last.trim()))
        .unwrap_or(peer)
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, optionally
/// with a port.
fn parse_forwarded_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

/// The access token: the raw `access_token` query parameter, overridden by the second word
/// of an `Authorization: Bearer` header.
pub fn access_token<'r>(query: Option<&'r str>, authorization: Option<&'r [u8]>) -> &'r [u8] {
    let bearer = authorization.and_then(|value| {
        let scheme = value.get(..7)?;
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return None;
        }
        value.split(|b| *b == b' ').nth(1)
    });
    bearer
        .or_else(|| query_param(query, "access_token").map(str::as_bytes))
        .unwrap_or_default()
}

const ADMIN_PREFIX: &str = "/_synapse/admin";

/// Whether a raw request path reaches the admin API: its raw form begins with
/// `/_synapse/admin`, or it would once percent-decoded, with empty and dot segments
/// removed. Paths that only look harmless before normalising are treated as admin paths,
/// so an allow-list cannot be sidestepped with `%2F`, `//` or `/./`.
pub fn is_admin_path(path: &str) -> bool {
    path.starts_with(ADMIN_PREFIX) || normalized(path).starts_with(ADMIN_PREFIX)
}

fn normalized(path: &str) -> String {
    let decoded = percent_decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in segments {
        out.push('/');
        out.push_str(s);
    }
    out
}

/// Percent-decoding, repeated until stable so double encoding cannot hide a prefix.
fn percent_decode(path: &str) -> Cow<'_, str> {
    let mut current = Cow::Borrowed(path);
    for _ in 0..4 {
        if !current.contains('%') {
            break;
        }
        let bytes = current.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        let next = String::from_utf8_lossy(&out).into_owned();
        if next == current {
            break;
        }
        current = Cow::Owned(next);
    }
    current
}

static ROOM_IN_PATH: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        "rooms/([^/]+)",
        "join/([^/]+)",
        "knock/([^/]+)",
        "profile/([^/]+)",
    ]
    .map(|r| Regex::new(r).expect("static regex"))
});

static CREATE_ROOM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom").expect("static regex")
});

/// What a request is hashed on in its pool. Empty means round robin.
pub fn balance_key<'r>(
    balance: Balance,
    path: &'r str,
    uri: &'r str,
    token: &'r [u8],
    client: IpAddr,
) -> Cow<'r, [u8]> {
    match balance {
        Balance::RoundRobin => Cow::Borrowed(b""),
        Balance::Uri => Cow::Borrowed(uri.as_bytes()),
        Balance::Source => Cow::Owned(match client {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        }),
        Balance::AccessToken => Cow::Borrowed(token),
        Balance::Room => {
            // The chart means createRoom to spread by token; it set the literal text
            // `hdr(X-Access-Token)` instead, which sent every createRoom to one worker.
            if CREATE_ROOM.is_match(path) {
                return Cow::Borrowed(token);
            }
            Cow::Borrowed(
                ROOM_IN_PATH
                    .iter()
                    .find_map(|re| re.captures(path).and_then(|c| c.get(1)))
                    .map_or(path.as_bytes(), |m| m.as_str().as_bytes()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn client_is_the_peer_unless_the_peer_is_trusted() {
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let xff = Some(&b"198.51.100.7, 203.0.113.9"[..]);
        assert_eq!(client_address(peer, xff, &[]), peer);
        let trusted = nets(&["192.0.2.0/24"]);
        assert_eq!(
            client_address(peer, xff, &trusted),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_address(peer, None, &trusted), peer);
        assert_eq!(client_address(peer, Some(b"garbage"), &trusted), peer);
        assert_eq!(
            client_address(peer, Some(b"[2001:db8::1]:443"), &trusted),
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn bearer_header_overrides_the_query_token() {
        assert_eq!(access_token(Some("access_token=q"), None), b"q");
        assert_eq!(
            access_token(Some("access_token=q"), Some(b"Bearer h")),
            b"h"
        );
        assert_eq!(access_token(None, Some(b"bEaReR h")), b"h");
        assert_eq!(
            access_token(Some("access_token=q"), Some(b"Basic xx")),
            b"q"
        );
        assert_eq!(access_token(None, None), b"");
    }

    #[test]
    fn admin_paths_cannot_hide_behind_encoding_or_dot_segments() {
        for p in [
            "/_synapse/admin/v1/users",
            "//_synapse/admin/v1/users",
            "/_synapse/%61dmin/v1/users",
            "/_synapse%2Fadmin/v1/users",
            "/_synapse/%2561dmin/v1",
            "/x/../_synapse/admin/v1",
            "/./_synapse/admin",
            "/_synapse/adminx",
        ] {
            assert!(is_admin_path(p), "{p} must count as admin");
        }
        for p in [
            "/_synapse/client/x",
            "/_matrix/client/v3/sync",
            "/_synapse/ad%",
        ] {
            assert!(!is_admin_path(p), "{p} is not admin");
        }
    }

    #[test]
    fn event_creator_key_is_the_room_or_user_in_the_path() {
        let key = |path: &str| {
            String::from_utf8(
                balance_key(
                    Balance::Room,
                    path,
                    path,
                    b"tok",
                    IpAddr::from([192, 0, 2, 1]),
                )
                .to_vec(),
            )
            .expect("utf8")
        };
        assert_eq!(
            key("/_matrix/client/v3/rooms/!r:x/send/m.room.message/1"),
            "!r:x"
        );
        assert_eq!(key("/_matrix/client/v3/join/#a:x"), "#a:x");
        assert_eq!(key("/_matrix/client/v3/profile/@u:x/displayname"), "@u:x");
        assert_eq!(key("/_matrix/client/v3/createRoom"), "tok");
        assert_eq!(key("/_matrix/client/v3/other"), "/_matrix/client/v3/other");
    }

    #[test]
    fn source_key_is_the_client_address_and_round_robin_has_none() {
        let key = |ip: [u8; 4]| balance_key(Balance::Source, "/p", "/p?q", b"t", IpAddr::from(ip));
        assert_eq!(key([192, 0, 2, 1]), key([192, 0, 2, 1]));
        assert_ne!(key([192, 0, 2, 1]), key([192, 0, 2, 2]));
        let rr = balance_key(
            Balance::RoundRobin,
            "/p",
            "/p?q",
            b"t",
            IpAddr::from([192, 0, 2, 1]),
        );
        assert!(rr.is_empty());
        let uri = balance_key(
            Balance::Uri,
            "/p",
            "/p?q",
            b"t",
            IpAddr::from([192, 0, 2, 1]),
        );
        assert_eq!(&*uri, b"/p?q");
    }
}
