//! The `X-Forwarded-*` headers a warm worker gets: who the client was, as a
//! reverse proxy tells its upstream.
//!
//! A client's own `X-Forwarded-For` (from a proxy in front of watchdog, or made
//! up) is kept, with the address watchdog saw appended to the same field, as
//! nginx's `$proxy_add_x_forwarded_for` does: frameworks that read only the first
//! field of a header (Go's `Header.Get`, Python's `headers[...]`) would otherwise
//! see just the client's claim.

use axum::http::{HeaderMap, HeaderValue};
use std::net::IpAddr;

pub const FOR: &str = "x-forwarded-for";
pub const PROTO: &str = "x-forwarded-proto";

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
}
