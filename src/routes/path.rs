//! Turns a request path into safe, decoded segments before any route is looked up.
//!
//! Each segment is percent-decoded exactly once. A segment that decodes to `.` or
//! `..`, holds a NUL byte or an encoded `/`, or is not UTF-8 is refused here, so no
//! later step (routing, `PATH_INFO`, a parameter) can see a path that walks out of DIR.

use percent_encoding::percent_decode_str;

/// Why a request path was refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path holds a `.` or `..` segment")]
    DotSegment,
    #[error("the path holds a NUL byte")]
    Nul,
    #[error("the path holds an encoded `/` (%2F) inside a segment")]
    EncodedSlash,
    #[error("the path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
}

/// Splits `raw` (the path part of the URL, without query) into decoded segments.
/// Empty segments (`//`, a trailing `/`) are dropped, so `/api/users/` and
/// `/api/users` are the same route.
///
/// # Errors
/// See [`PathError`].
pub fn decode_segments(raw: &str) -> Result<Vec<String>, PathError> {
    let mut segments = Vec::new();
    for raw_segment in raw.split('/').filter(|s| !s.is_empty()) {
        let bytes: Vec<u8> = percent_decode_str(raw_segment).collect();
        if bytes.contains(&0) {
            return Err(PathError::Nul);
        }
        if bytes.contains(&b'/') {
            return Err(PathError::EncodedSlash);
        }
        let segment = String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        segments.push(segment);
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok: &[(&str, &[&str])] = &[
            ("/", &[]),
            ("/api/users/", &["api", "users"]),
            ("//api///x", &["api", "x"]),
            ("/api/a%20b", &["api", "a b"]),
            ("/api/%25", &["api", "%"]),
            ("/api/%252e%252e", &["api", "%2e%2e"]),
            ("/api/..a", &["api", "..a"]),
        ];
        for (raw, want) in ok {
            let got = decode_segments(raw).unwrap();
            assert_eq!(got, want.to_vec(), "{raw}");
        }
        let bad: &[(&str, PathError)] = &[
            ("/api/../etc", PathError::DotSegment),
            ("/api/%2e%2e/etc", PathError::DotSegment),
            ("/api/%2E", PathError::DotSegment),
            ("/api/./x", PathError::DotSegment),
            ("/api/a%00", PathError::Nul),
            ("/api/..%2fetc", PathError::EncodedSlash),
            ("/api/%ff", PathError::NotUtf8),
        ];
        for (raw, want) in bad {
            assert_eq!(decode_segments(raw).as_ref(), Err(want), "{raw}");
        }
    }
}
