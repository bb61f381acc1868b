//! The X-Ray trace header a Lambda runtime is handed with each event
//! (`Lambda-Runtime-Trace-Id`, which runtimes put in `_X_AMZN_TRACE_ID`).
//!
//! A client's own `X-Amzn-Trace-Id` is passed through, as Lambda does in its
//! default PassThrough mode, so a trace spanning services does not break at
//! watchdog. Without one, a well-formed header is made up: X-Ray's form is a
//! root of an 8-hex-digit epoch second and 24 hex digits, and tracing
//! libraries reject any other (built from the request id as it came, an
//! `X-Request-Id` such as a UUID gave roots of 32 characters).

use std::hash::{DefaultHasher, Hasher};

/// The trace header for an event: `incoming` when it is a valid X-Ray header,
/// else one made from `request_id` and the time, not sampled.
pub fn header(incoming: Option<&str>, request_id: &str, epoch_seconds: u64) -> String {
    if let Some(incoming) = incoming.filter(|value| has_valid_root(value)) {
        return incoming.to_owned();
    }
    // Two different seeds: 96 bits of id, the same for the same request id.
    let hash = |seed: u64| {
        let mut hasher = DefaultHasher::new();
        hasher.write_u64(seed);
        hasher.write(request_id.as_bytes());
        hasher.finish()
    };
    let (high, low) = (hash(1), hash(2));
    format!(
        "Root=1-{:08x}-{:08x}{:016x};Parent={:016x};Sampled=0",
        epoch_seconds & 0xffff_ffff,
        high & 0xffff_ffff,
        low,
        hash(3)
    )
}

/// Whether `value` holds `Root=1-XXXXXXXX-YYYYYYYYYYYYYYYYYYYYYYYY` (hex) and
/// nothing a header value cannot carry.
fn has_valid_root(value: &str) -> bool {
    let well_formed_root = |root: &str| {
        let mut parts = root.split('-');
        let is_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        parts.next() == Some("1")
            && parts.next().is_some_and(|time| is_hex(time, 8))
            && parts.next().is_some_and(|id| is_hex(id, 24))
            && parts.next().is_none()
    };
    value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && value
            .split(';')
            .filter_map(|field| field.trim().strip_prefix("Root="))
            .any(well_formed_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENTS: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    #[test]
    fn a_clients_trace_is_passed_through() {
        assert_eq!(header(Some(CLIENTS), "id", 0), CLIENTS);
    }

    #[test]
    fn a_made_up_trace_has_xrays_form_whatever_the_request_id() {
        for incoming in [
            None,
            Some("Root=1-abc"),
            Some("Root=1-5759e988-zz;Sampled=1"),
        ] {
            for id in ["123e4567-e89b-12d3-a456-426614174000", "req_ABC.xyz-1", ""] {
                let made = header(incoming, id, 0x5759_e988);
                assert!(has_valid_root(&made), "{made}");
                assert!(made.starts_with("Root=1-5759e988-"), "{made}");
                assert!(made.ends_with(";Sampled=0"), "{made}");
                let parent = made.split(";Parent=").nth(1).unwrap();
                assert_eq!(parent.split(';').next().unwrap().len(), 16, "{made}");
            }
        }
        assert_eq!(header(None, "a", 1), header(None, "a", 1));
        assert_ne!(header(None, "a", 1), header(None, "b", 1));
    }
}
