//! Who the client is behind a balancer (`--trusted-proxy`).
//!
//! Behind a balancer, every connection comes from the balancer: a function
//! would see its address as `REMOTE_ADDR`, and `http` as the scheme of a site
//! served over HTTPS. A balancer says who the client was in `X-Forwarded-For`
//! and how it was reached in `X-Forwarded-Proto`, but any client can send
//! those headers too, so they are believed only from the addresses the
//! operator names, as nginx's `set_real_ip_from` with `real_ip_recursive` does:
//! the `X-Forwarded-For` chain is read from its right end, each hop a trusted
//! proxy appended, and the first address that is not a trusted proxy's is the
//! client.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::invoke::forwarded;

/// The addresses whose forwarding headers are believed; none by default.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// What a trusted proxy said of the request it passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address.
    pub client: IpAddr,
    /// Reached over HTTPS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The port the client reached (`X-Forwarded-Port`, as an AWS ALB sets
    /// it): a function building its own URLs takes `SERVER_PORT` for it.
    pub port: Option<u16>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, as the settings line shows them.
    pub fn ranges(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// A range as wide as the whole address space (`0.0.0.0/0`, `::/0`): any
    /// client could then set its own address and scheme.
    pub fn trusts_anyone(&self) -> bool {
        self.0.iter().any(|net| net.prefix_len() == 0)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// What the proxy at `peer` says of the request, if `peer` is trusted and
    /// it says anything; none for a request from anyone else.
    pub fn forwarded(&self, peer: IpAddr, headers: &HeaderMap) -> Option<Forwarded> {
        if self.0.is_empty() || !self.trusts(peer) {
            return None;
        }
        let mut client = peer.to_canonical();
        // Right to left: the nearest hop first. An entry that is no address
        // (`unknown`, garbage a client sent) ends the walk at the last hop
        // that could be read. Split as bytes: a field is one line in which a
        // proxy appends to what the client sent, and a client's byte that is
        // not text must not take the proxy's entry with it.
        // Walked backwards as it stands, fields and entries alike: no list
        // is made on a request that every request behind a balancer is.
        let entries = headers
            .get_all(forwarded::FOR)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|&byte| byte == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|entry| !entry.is_empty());
        for entry in entries {
            let Some(address) = std::str::from_utf8(entry).ok().and_then(parse_entry) else {
                break;
            };
            client = address.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        let https = nearest(headers, forwarded::PROTO)
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        let port = nearest(headers, forwarded::PORT).and_then(|port| port.parse().ok());
        Some(Forwarded {
            client,
            https,
            port,
        })
    }
}

/// What the nearest proxy set in `name`: the last field, if several.
fn nearest<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .map(str::trim)
}

/// An `X-Forwarded-For` entry's address: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address);
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|socket| socket.ip())
}

/// `--trusted-proxy`'s value or an entry of `trusted_proxies`: an address or a
/// range in CIDR form.
///
/// # Errors
/// What it is not, with examples.
pub fn parse_range(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    let range = value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "`{value}` is not an address or a range (examples: 10.0.0.0/8, 192.168.1.10, fd00::/8)"
            )
        })?;
    // An IPv4 range written as IPv6 (`::ffff:10.0.0.0/104`): peers are
    // compared as IPv4, so it is kept as the IPv4 range it names.
    if let IpNet::V6(v6) = range
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
            .map(IpNet::V4)
            .map_err(|err| format!("`{value}`: {err}"));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| parse_range(r).unwrap()).collect())
    }

    fn with_for(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(forwarded::FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        // A client's own claim (6.6.6.6) is left of its real address.
        let headers = with_for(&["6.6.6.6, 203.0.113.7", "10.1.2.3"]);
        let seen = proxies.forwarded(peer, &headers).unwrap();
        assert_eq!(seen.client, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert!(!seen.https);
        // Every hop trusted: the leftmost.
        let headers = with_for(&["10.9.9.9, 10.1.2.3"]);
        assert_eq!(
            proxies.forwarded(peer, &headers).unwrap().client,
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.forwarded(peer, &HeaderMap::new()).unwrap().client,
            peer
        );
        // Garbage ends the walk at the last hop read.
        let headers = with_for(&["203.0.113.7, unknown, 10.1.2.3"]);
        assert_eq!(
            proxies.forwarded(peer, &headers).unwrap().client,
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        // A client's bytes that are not text, on the line the proxy
        // appended to: the proxy's entry is still read.
        let mut headers = HeaderMap::new();
        headers.append(
            forwarded::FOR,
            HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap(),
        );
        assert_eq!(
            proxies.forwarded(peer, &headers).unwrap().client,
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Mapped addresses are told as IPv4.
        let headers = with_for(&["::ffff:203.0.113.7"]);
        assert_eq!(
            proxies.forwarded(peer, &headers).unwrap().client,
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Ports and brackets, as some proxies write them.
        let headers = with_for(&["[2001:db8::1]:4711"]);
        assert_eq!(
            proxies.forwarded(peer, &headers).unwrap().client,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn headers_from_anyone_else_are_not_believed() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let headers = with_for(&["203.0.113.7"]);
        assert_eq!(
            proxies.forwarded("192.0.2.1".parse().unwrap(), &headers),
            None
        );
        assert_eq!(
            TrustedProxies::default().forwarded("10.0.0.1".parse().unwrap(), &headers),
            None
        );
        // An IPv4 peer on an IPv6 socket is the IPv4 address.
        assert!(
            proxies
                .forwarded("::ffff:10.0.0.1".parse().unwrap(), &headers)
                .is_some()
        );
    }

    #[test]
    fn https_is_what_the_nearest_proxy_says() {
        let proxies = trusted(&["127.0.0.1/32"]);
        let mut headers = HeaderMap::new();
        headers.insert(forwarded::PROTO, HeaderValue::from_static("HTTPS"));
        let seen = proxies.forwarded("127.0.0.1".parse().unwrap(), &headers);
        assert!(seen.unwrap().https);
        headers.insert(forwarded::PROTO, HeaderValue::from_static("https, http"));
        let seen = proxies.forwarded("127.0.0.1".parse().unwrap(), &headers);
        assert!(!seen.unwrap().https);
        assert_eq!(seen.unwrap().port, None);
        headers.insert(forwarded::PORT, HeaderValue::from_static("443"));
        let seen = proxies.forwarded("127.0.0.1".parse().unwrap(), &headers);
        assert_eq!(seen.unwrap().port, Some(443));
    }

    #[test]
    fn ranges_are_addresses_or_cidr() {
        assert_eq!(parse_range("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_range("192.168.1.10").unwrap().to_string(),
            "192.168.1.10/32"
        );
        assert_eq!(parse_range("::1").unwrap().to_string(), "::1/128");
        assert!(parse_range("10.0.0.0/33").is_err());
        assert_eq!(
            parse_range("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_range("lb.internal").unwrap_err().contains("examples"));
    }
}
