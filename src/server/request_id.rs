//! Request ids: kept from an incoming `X-Request-Id` when it is sane, else made here.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;

pub const HEADER: &str = "x-request-id";

/// The id decided for a request as hyper handed it over
/// ([`super::taken::Taken`], which the connection keeps to name the request
/// it was answering when it ends badly); for one that came no such way
/// (`watchdog invoke`, cron), from its headers.
pub fn of(extensions: &axum::http::Extensions, headers: &HeaderMap) -> String {
    extensions
        .get::<std::sync::Arc<super::taken::Taken>>()
        .map_or_else(|| from_headers(headers), |taken| taken.id.clone())
}

/// The client's id when it is 1 to 128 visible ASCII characters, else a new one.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(generate, str::to_owned)
}

/// 16 hex digits, unique within this process and unlikely to repeat across
/// restarts: a per-process random start plus a counter, mixed so neighbours differ.
pub fn generate() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    });
    let n = start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    // splitmix64 finaliser: a bijection, so distinct counters give distinct ids.
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016x}", z ^ (z >> 31))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keeps_sane_ids_only() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(from_headers(&headers), "abc-123");
        headers.insert(HEADER, HeaderValue::from_static("has space"));
        assert_ne!(from_headers(&headers), "has space");
        assert_ne!(generate(), generate());
        assert_eq!(generate().len(), 16);
    }
}
