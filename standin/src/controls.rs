//! The `X-Standin-*` request headers through which a test shapes the identity answer.

use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{HeaderMap, StatusCode};

/// How to answer one identity request, read from its headers.
#[derive(Debug, PartialEq)]
pub struct Controls {
    pub delay: Option<Duration>,
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub content_encoding: Option<HeaderValue>,
}

/// Bodies answered with a chosen content type are padded to this size, so that proxies
/// with a minimum size for compression still compress them.
pub const PADDED_LEN: usize = 200;

impl Controls {
    /// Read the controls; the error is the answer's text when a header makes no sense.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let delay = number(headers, "x-standin-delay-ms")?.map(Duration::from_millis);

        let status = match number(headers, "x-standin-status")? {
            None => StatusCode::OK,
            Some(code) => u16::try_from(code)
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                // hyper cannot send an informational status as the final answer
                .filter(|status| !status.is_informational())
                .ok_or_else(|| format!("x-standin-status: {code} is not a final HTTP status"))?,
        };

        Ok(Controls {
            delay,
            status,
            content_type: headers.get("x-standin-content-type").cloned(),
            content_encoding: headers.get("x-standin-content-encoding").cloned(),
        })
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| format!("{name}: expected a number, got {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    hyper::header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn no_control_headers_means_a_plain_200() {
        let controls = Controls::from_headers(&HeaderMap::new()).unwrap();
        assert_eq!(
            controls,
            Controls {
                delay: None,
                status: StatusCode::OK,
                content_type: None,
                content_encoding: None,
            }
        );
    }

    #[test]
    fn every_control_header_is_read() {
        let controls = Controls::from_headers(&headers(&[
            ("x-standin-delay-ms", "250"),
            ("x-standin-status", "503"),
            ("x-standin-content-type", "text/html"),
            ("x-standin-content-encoding", "br"),
        ]))
        .unwrap();
        assert_eq!(controls.delay, Some(Duration::from_millis(250)));
        assert_eq!(controls.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(controls.content_type.unwrap(), "text/html");
        assert_eq!(controls.content_encoding.unwrap(), "br");
    }

    #[test]
    fn nonsense_numbers_are_refused_with_the_header_name() {
        let error = Controls::from_headers(&headers(&[("x-standin-delay-ms", "soon")]));
        assert!(error.unwrap_err().starts_with("x-standin-delay-ms:"));
    }

    #[test]
    fn informational_and_out_of_range_statuses_are_refused() {
        for status in ["100", "99", "1000", "70000"] {
            let value = HeaderValue::from_str(status).unwrap();
            let mut map = HeaderMap::new();
            map.insert("x-standin-status", value);
            assert!(Controls::from_headers(&map).is_err(), "{status} accepted");
        }
    }
}
