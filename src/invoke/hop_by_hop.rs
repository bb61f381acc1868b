//! Hop-by-hop response headers (RFC 9110 §7.6.1): they describe one connection,
//! so a function's or a worker's never reach the client. Every invoker strips
//! them the same way, here. `Trailer` is not one of them: it declares the
//! trailer fields a chunked body carries, and hyper sends only declared ones.

use axum::http::{HeaderMap, HeaderName, header};

/// The headers that are always hop-by-hop.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Whether `name` is always hop-by-hop.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// The headers a `Connection` field names beyond those always hop-by-hop:
/// sent for that one hop, so a proxy drops them (RFC 9110 §7.6.1). Empty, and
/// so not allocated, for the usual `keep-alive`, `close` or nothing.
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| !is_hop_by_hop(name) && name.as_str() != "close")
        .collect()
}

/// The names a `Connection` field lists, as written.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

/// Removes the hop-by-hop headers of a response, the ones its `Connection`
/// header names too. A response that came framed by Transfer-Encoding loses its
/// Content-Length as well (RFC 9112 §6.3: the length is the chunks'), or the
/// client would wait for bytes that never come. Runs on every warm response:
/// a lookup per name, and no allocation unless `Connection` names headers.
pub fn strip(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in connection_named(headers).iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-private"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("content-length", "100"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip(&mut headers);
        let left: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(left, [("set-cookie", "a=1"), ("set-cookie", "b=2")]);
    }
}
