//! The request's Transfer-Encoding (RFC 9112 §6.1). hyper de-chunks a body whose
//! last coding is `chunked` and passes the rest along, so `gzip, chunked` or
//! `foo, chunked` reached functions as still-encoded bytes with a
//! `CONTENT_LENGTH` that looked final. watchdog decodes no coding but chunked:
//! anything else is 501 Not Implemented (as nginx and lighttpd answer), and
//! `chunked` twice is a malformed request (400).

use axum::http::{HeaderMap, header};

/// Why a request's Transfer-Encoding is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferCodingError {
    #[error("the request body is sent with transfer coding `{0}`, which watchdog does not decode")]
    Unsupported(String),
    #[error("the request body is chunked more than once")]
    ChunkedTwice,
}

/// # Errors
/// When the codings are anything but one `chunked`.
pub fn check(headers: &HeaderMap) -> Result<(), TransferCodingError> {
    let mut chunked = 0;
    super::list_header::try_each_member(headers, header::TRANSFER_ENCODING, |coding| {
        if !coding.eq_ignore_ascii_case("chunked") {
            return Err(TransferCodingError::Unsupported(super::list_header::shown(
                coding,
            )));
        }
        chunked += 1;
        Ok(())
    })?;
    if chunked > 1 {
        return Err(TransferCodingError::ChunkedTwice);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codings(values: &[&str]) -> Result<(), TransferCodingError> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::TRANSFER_ENCODING, value.parse().unwrap());
        }
        check(&headers)
    }

    #[test]
    fn only_one_chunked_is_taken() {
        assert_eq!(codings(&[]), Ok(()));
        assert_eq!(codings(&["chunked"]), Ok(()));
        assert_eq!(codings(&["Chunked"]), Ok(()));
        assert_eq!(
            codings(&["gzip, chunked"]),
            Err(TransferCodingError::Unsupported("gzip".into()))
        );
        assert_eq!(
            codings(&["identity", "chunked"]),
            Err(TransferCodingError::Unsupported("identity".into()))
        );
        assert_eq!(
            codings(&["chunked , chunked"]),
            Err(TransferCodingError::ChunkedTwice)
        );
    }
}
