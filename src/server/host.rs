//! The Host header a function may rely on (RFC 9112 §3.2): an HTTP/1.1 request
//! carries exactly one, and it holds a host and port, nothing else. Functions
//! build absolute URLs from it (`HTTP_HOST`, `SERVER_NAME`), so two of them, or
//! one with spaces or a path in it, is refused with 400, as Apache and nginx do.

use axum::http::uri::Authority;
use axum::http::{HeaderMap, Version, header};

/// Why a request's Host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an HTTP/1.1 request must have a Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Repeated,
    #[error("the Host header is not a host name or address with an optional port")]
    Invalid,
    #[error("the request target holds user info (`user:password@` before the host)")]
    UserInfo,
}

/// Checks the Host header of a request.
///
/// # Errors
/// When an HTTP/1.1 request has none, any request has two, or its value is
/// neither empty nor a host (RFC 3986 reg-name, IPv4 or a bracketed IPv6
/// literal) with an optional port.
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), HostError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return if version == Version::HTTP_11 {
            Err(HostError::Missing)
        } else {
            Ok(())
        };
    };
    if hosts.next().is_some() {
        return Err(HostError::Repeated);
    }
    // Empty is what a client sends for a target without an authority.
    if host.is_empty() || is_host(host.as_bytes()) {
        Ok(())
    } else {
        Err(HostError::Invalid)
    }
}

/// An absolute-form target (`GET http://a.example/x`, as proxies send) names the
/// host itself, and RFC 9112 §3.2.2 has the server ignore Host then: the Host a
/// function sees (`HTTP_HOST`, `SERVER_NAME`, a warm worker's) becomes the
/// target's authority.
///
/// # Errors
/// A target with user info (`http://user:pw@host/`): RFC 9110 §4.2.4 has it
/// treated as an error, as it is mostly used to disguise the host.
pub fn take_from_target(uri: &axum::http::Uri, headers: &mut HeaderMap) -> Result<(), HostError> {
    let Some(authority) = uri.authority() else {
        return Ok(());
    };
    if authority.as_str().contains('@') {
        return Err(HostError::UserInfo);
    }
    if let Ok(value) = axum::http::HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, value);
    }
    Ok(())
}

/// A URI authority (the http crate's parser: reg-name, IPv4 or a bracketed IPv6
/// literal) without user info, which a Host never has, and with a TCP port if
/// any: digits, at most 65535 (the parser leaves the port unchecked, and a
/// function would get `SERVER_PORT=99999`). It copies the value once: one small
/// allocation a request, beside the dozens hyper makes.
fn is_host(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok_and(|authority| {
        !authority.as_str().contains('@')
            && !authority.host().is_empty()
            && authority.as_str().rsplit_once(':').is_none_or(|(_, port)| {
                // `[::1]` ends in `]`, not a port; `host:` has an empty one.
                port.ends_with(']') || port.is_empty() || is_tcp_port(port)
            })
    })
}

/// Digits only (`u16`'s parser would take a `+`), in 0..=65535.
fn is_tcp_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_hosts(hosts: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        headers
    }

    #[test]
    fn an_absolute_target_names_the_host() {
        let mut headers = with_hosts(&["good.example"]);
        let uri: axum::http::Uri = "http://evil.example:8080/api/x?q".parse().unwrap();
        take_from_target(&uri, &mut headers).unwrap();
        assert_eq!(headers[header::HOST], "evil.example:8080");
        let mut headers = with_hosts(&["good.example"]);
        take_from_target(&"/api/x".parse().unwrap(), &mut headers).unwrap();
        assert_eq!(headers[header::HOST], "good.example");
        // User info is an error (RFC 9110 §4.2.4), not quietly dropped.
        let uri: axum::http::Uri = "http://user:pw@evil.example/api/x".parse().unwrap();
        assert_eq!(
            take_from_target(&uri, &mut headers),
            Err(HostError::UserInfo)
        );
        assert_eq!(headers[header::HOST], "good.example");
    }

    #[test]
    fn one_host_with_an_optional_port_passes() {
        for host in [
            "example.com",
            "localhost:3000",
            "127.0.0.1:8080",
            "example.com:65535",
            "example.com:",
            "[::1]",
            "[::1]:3000",
            "[fe80::1%25eth0]:8080",
            "my_host.internal",
            "xn--caf-dma.example",
        ] {
            assert_eq!(
                check(Version::HTTP_11, &with_hosts(&[host])),
                Ok(()),
                "{host}"
            );
        }
        // HTTP/1.0 need not name one.
        assert_eq!(check(Version::HTTP_10, &with_hosts(&[])), Ok(()));
    }

    #[test]
    fn missing_repeated_or_malformed_hosts_are_refused() {
        assert_eq!(
            check(Version::HTTP_11, &with_hosts(&[])),
            Err(HostError::Missing)
        );
        assert_eq!(
            check(Version::HTTP_11, &with_hosts(&["a.com", "b.com"])),
            Err(HostError::Repeated)
        );
        // Empty is allowed: a target without an authority.
        assert_eq!(check(Version::HTTP_11, &with_hosts(&[""])), Ok(()));
        for host in [
            "x rm -rf",
            "evil.com/path",
            "a.com:80x",
            "user@a.com",
            "[::1",
            "[::1]x",
            "[z z]",
            ":80",
            "a.com:65536",
            "a.com:99999",
            "a.com:+80",
            "[::1]:70000",
        ] {
            assert_eq!(
                check(Version::HTTP_11, &with_hosts(&[host])),
                Err(HostError::Invalid),
                "{host:?}"
            );
        }
    }
}
