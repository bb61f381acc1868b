//! The `X-Forwarded-*` headers a warm worker gets: who the client was, as a
//! reverse proxy tells its upstream.
//!
//! A client's own `X-Forwarded-For` (from a proxy in front of watchdog, or made
//! up) is kept, with the address watchdog saw appended to the same field, as
//! nginx's `$proxy_add_x_forwarded_for` does: frameworks that read only the first
//! field of a header (Go's `Header.Get`, Python's `headers[...]`) would otherwise
//! see just the client's claim.
//!
//! `X-Forwarded-Host` and `X-Real-IP` are what `vercel dev` and a typical nginx
//! set: a handler building absolute URLs or logging the client reads them.
//! `X-Real-IP` is always the address watchdog saw, as nginx's
//! `proxy_set_header X-Real-IP $remote_addr` sets it: code ported from Vercel
//! trusts it for rate limits and allowlists, and a client must not choose it
//! (behind a proxy, the client's own address is in `X-Forwarded-For`). A
//! `X-Forwarded-Host` a proxy in front set is kept, as `X-Forwarded-Proto` is,
//! since that proxy's `Host` may be an internal name.

use axum::http::{HeaderMap, HeaderValue};
use std::net::IpAddr;

pub const FOR: &str = "x-forwarded-for";
pub const PROTO: &str = "x-forwarded-proto";
pub const PORT: &str = "x-forwarded-port";
pub const HOST: &str = "x-forwarded-host";
pub const REAL_IP: &str = "x-real-ip";

/// `X-Forwarded-For`: the client's fields, then `client`.
pub fn chain(headers: &HeaderMap, client: IpAddr) -> HeaderValue {
    let mut chain = String::new();
    for value in headers.get_all(FOR) {
        if let Ok(text) = value.to_str()
            && !text.trim().is_empty()
        {
            chain.push_str(text.trim());
            chain.push_str(", ");
        }
    }
    chain.push_str(&client.to_string());
    // Visible ASCII fields and an address: always a valid value.
    HeaderValue::from_str(&chain).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// `X-Forwarded-Proto`: the client's (a TLS proxy in front says `https`), else
/// `http`, which is what watchdog itself serves.
pub fn proto(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(PROTO)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("http"))
}

/// `X-Forwarded-Host`: the client's, else the `Host` it asked for (none when it
/// sent neither, as an HTTP/1.0 client may).
pub fn host(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(HOST)
        .or_else(|| headers.get(axum::http::header::HOST))
        .cloned()
}

/// `X-Real-IP`: the address watchdog saw, whatever the request says.
pub fn real_ip(client: IpAddr) -> HeaderValue {
    // An address's text is always a valid value.
    HeaderValue::from_str(&client.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_joins_the_chain_in_the_same_field() {
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(chain(&headers, client), "127.0.0.1");
        headers.append(FOR, HeaderValue::from_static("1.2.3.4"));
        headers.append(FOR, HeaderValue::from_static(" 10.0.0.1, 10.0.0.2 "));
        assert_eq!(
            chain(&headers, client),
            "1.2.3.4, 10.0.0.1, 10.0.0.2, 127.0.0.1"
        );
        assert_eq!(proto(&headers), "http");
        headers.insert(PROTO, HeaderValue::from_static("https"));
        assert_eq!(proto(&headers), "https");
    }

    #[test]
    fn a_proxys_forwarded_host_is_kept_else_the_requests_host() {
        let mut headers = HeaderMap::new();
        assert_eq!(host(&headers), None);
        headers.insert("host", HeaderValue::from_static("example.test:8080"));
        assert_eq!(host(&headers).unwrap(), "example.test:8080");
        headers.insert(HOST, HeaderValue::from_static("public.example"));
        assert_eq!(host(&headers).unwrap(), "public.example");
        assert_eq!(real_ip("::1".parse().unwrap()), "::1");
    }
}
