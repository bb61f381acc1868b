//! Request ids: kept from an incoming `X-Request-Id` when it is sane, else made here.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;

use crate::observability::sparse::Sparse;

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

/// The longest client id kept: enough for a UUID with a prefix, or a trace id.
const LONGEST: usize = 128;

/// The client's id when it is 1 to [`LONGEST`] visible ASCII characters, else a
/// new one.
pub fn from_headers(headers: &HeaderMap) -> String {
    let Some(given) = headers.get(HEADER) else {
        return generate();
    };
    match refusal(given.as_bytes()) {
        None => String::from_utf8_lossy(given.as_bytes()).into_owned(),
        Some(why) => {
            let id = generate();
            warn_replaced(why, &id);
            id
        }
    }
}

/// Why a client's id is not kept, if it is not: it would go into log lines
/// and a function's environment as it came.
fn refusal(given: &[u8]) -> Option<String> {
    if given.is_empty() {
        Some("it is empty".into())
    } else if given.len() > LONGEST {
        Some(format!(
            "it is {} bytes, over the {LONGEST} kept",
            given.len()
        ))
    } else if !given.iter().all(u8::is_ascii_graphic) {
        Some(
            "it holds other than visible ASCII characters (a space, a control or non-ASCII byte)"
                .into(),
        )
    } else {
        None
    }
}

/// An operator whose balancer sends ids watchdog does not keep would
/// otherwise find its ids missing from watchdog's lines with no word why. Any
/// client can send such ids on every request: sparse.
fn warn_replaced(why: String, id: &str) {
    static REPLACED: Sparse = Sparse::new(std::time::Duration::from_secs(60));
    if let Some(replaced) = REPLACED.note() {
        tracing::warn!(
            request_id = %id,
            replaced,
            "a client's X-Request-Id was not kept, as {why}: the request has an id of watchdog's making (1 to {LONGEST} visible ASCII characters are kept); said at most once a minute, `replaced` counting since the last"
        );
    }
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
        assert_eq!(refusal(&[b'a'; 128]), None);
        assert!(refusal(&[b'a'; 129]).is_some_and(|why| why.contains("129 bytes")));
        assert!(refusal(b"").is_some());
        assert!(refusal("caf\u{e9}".as_bytes()).is_some());
        assert_ne!(generate(), generate());
        assert_eq!(generate().len(), 16);
    }
}
