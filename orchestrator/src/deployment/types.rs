//! Small value types of the deployment file, checked once when the file is read: hostnames,
//! image references, ULIDs, URLs and the RTC public address.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A DNS name such as `matrix.example.com`: labels of letters, digits and hyphens, no port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

impl Hostname {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Hostname {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let expected = || format!("expected a DNS hostname like matrix.example.com, got {value:?}");
        let name = value.to_ascii_lowercase();
        if name.is_empty() || name.len() > 253 {
            return Err(expected());
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !name.split('.').all(label_ok) {
            return Err(expected());
        }
        Ok(Hostname(name))
    }
}

impl From<Hostname> for String {
    fn from(value: Hostname) -> Self {
        value.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container image pinned by tag or digest: `registry/repository:tag` or `...@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef(String);

impl ImageRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The registry host the image is pulled from (`docker.io` when the reference names none,
    /// the way Docker reads it).
    pub fn registry(&self) -> &str {
        match self.0.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first
            }
            _ => "docker.io",
        }
    }
}

impl TryFrom<String> for ImageRef {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let last_segment = value.rsplit('/').next().unwrap_or_default();
        let pinned = value.contains("@sha256:") || last_segment.contains(':');
        let clean = !value.is_empty() && !value.chars().any(char::is_whitespace);
        if clean && pinned && !value.ends_with(':') {
            Ok(ImageRef(value))
        } else {
            Err(format!(
                "expected an image reference pinned by tag or digest, like \
                 docker.io/postgres:17-alpine, got {value:?}"
            ))
        }
    }
}

impl From<ImageRef> for String {
    fn from(value: ImageRef) -> Self {
        value.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ULID (26 characters of Crockford base32), the identifier MAS wants for a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ulid(String);

impl Ulid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Ulid {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let upper = value.to_ascii_uppercase();
        // The first character carries the top bits of a 48-bit timestamp: at most 7.
        let in_range = upper.as_bytes().first().is_some_and(|b| *b <= b'7');
        if upper.len() == 26 && in_range && upper.chars().all(|c| ALPHABET.contains(c)) {
            Ok(Ulid(upper))
        } else {
            Err(format!(
                "expected a ULID (26 characters of Crockford base32), got {value:?}"
            ))
        }
    }
}

impl From<Ulid> for String {
    fn from(value: Ulid) -> Self {
        value.0
    }
}

/// An absolute `http` or `https` URL (an OIDC issuer, a Vault address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let expected = || format!("expected an http:// or https:// URL, got {value:?}");
        let url = url::Url::parse(&value).map_err(|_| expected())?;
        if matches!(url.scheme(), "http" | "https") && url.host().is_some() {
            Ok(HttpUrl(url))
        } else {
            Err(expected())
        }
    }
}

impl From<HttpUrl> for String {
    fn from(value: HttpUrl) -> Self {
        value.0.into()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// How LiveKit learns the public address it announces to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PublicAddress {
    /// Ask a STUN server at start (LiveKit's `rtc.use_external_ip`).
    #[default]
    Stun,
    /// A fixed address (LiveKit's `rtc.node_ip`).
    Ip(IpAddr),
}

impl TryFrom<String> for PublicAddress {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value == "stun" {
            return Ok(PublicAddress::Stun);
        }
        value.parse().map(PublicAddress::Ip).map_err(|_| {
            format!("expected `stun` or an IP address like 203.0.113.10, got {value:?}")
        })
    }
}

impl From<PublicAddress> for String {
    fn from(value: PublicAddress) -> Self {
        match value {
            PublicAddress::Stun => "stun".into(),
            PublicAddress::Ip(ip) => ip.to_string(),
        }
    }
}

/// A name made of `[A-Za-z0-9_.-]` (Docker network names, Traefik entrypoints and
/// certificate resolvers, LiveKit key names, usernames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if ok {
            Ok(Name(value))
        } else {
            Err(format!(
                "expected a name of letters, digits, `_`, `.` and `-`, got {value:?}"
            ))
        }
    }
}

impl From<Name> for String {
    fn from(value: Name) -> Self {
        value.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_lowercased_and_reject_ports_and_spaces() {
        let host = Hostname::try_from("Matrix.Example.COM".to_string()).unwrap();
        assert_eq!(host.as_str(), "matrix.example.com");
        assert!(Hostname::try_from("matrix.example.com:443".to_string()).is_err());
        assert!(Hostname::try_from("two words".to_string()).is_err());
        assert!(Hostname::try_from("-bad.example.com".to_string()).is_err());
        assert!(Hostname::try_from(String::new()).is_err());
    }

    #[test]
    fn image_references_must_be_pinned() {
        assert!(ImageRef::try_from("docker.io/postgres:17-alpine".to_string()).is_ok());
        assert!(ImageRef::try_from("localhost:5000/ess-router@sha256:ab".to_string()).is_ok());
        assert!(ImageRef::try_from("docker.io/postgres".to_string()).is_err());
        assert!(ImageRef::try_from("localhost:5000/ess-router".to_string()).is_err());
        assert!(ImageRef::try_from("postgres:".to_string()).is_err());
    }

    #[test]
    fn image_registry_follows_docker_rules() {
        let registry = |s: &str| {
            ImageRef::try_from(s.to_string())
                .unwrap()
                .registry()
                .to_owned()
        };
        assert_eq!(registry("oci.element.io/synapse:v1"), "oci.element.io");
        assert_eq!(registry("library/redis:7"), "docker.io");
        assert_eq!(registry("redis:7"), "docker.io");
        assert_eq!(registry("localhost:5000/x:1"), "localhost:5000");
    }

    #[test]
    fn ulids_are_checked_and_uppercased() {
        assert!(Ulid::try_from("01jshpzhaxc50qbkh67mh33tnf".to_string()).is_ok());
        assert!(Ulid::try_from("81JSHPZHAXC50QBKH67MH33TNF".to_string()).is_err());
        assert!(Ulid::try_from("01JSHPZHAXC50QBKH67MH33TNU".to_string()).is_err());
        assert!(Ulid::try_from("01JSHPZ".to_string()).is_err());
    }

    #[test]
    fn public_address_is_stun_or_an_ip() {
        assert_eq!(
            PublicAddress::try_from("stun".to_string()),
            Ok(PublicAddress::Stun)
        );
        assert!(matches!(
            PublicAddress::try_from("203.0.113.10".to_string()),
            Ok(PublicAddress::Ip(_))
        ));
        assert!(PublicAddress::try_from("somewhere".to_string()).is_err());
    }
}
