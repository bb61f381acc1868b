//! The CGI response envelope: the header block a function writes before its body.
//!
//! The parser is pure and incremental. [`EnvelopeReader::push`] takes stdout chunks as
//! they arrive and answers as soon as the block is complete, so the body can stream.
//! It works line by line in order, which makes the result independent of how the
//! output was split into chunks (a property test checks this).
//!
//! Rules (RFC 3875 §6 plus what real hosts accept): lines end in LF or CRLF, a blank
//! line ends the block, names are case-insensitive, `Status:` sets the status (so
//! does a first line `HTTP/1.1 404 Not Found`, as `nph-` scripts write it),
//! `Location:` without `Status:` (or with `Status: 200`) redirects (302 for an absolute URL, an internal
//! re-dispatch for a local path), repeated headers are kept, hop-by-hop headers are
//! dropped, and a value holding a bare CR or any other control byte is refused so a
//! function can never split the response.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use bytes::{Bytes, BytesMut};
use hyper::ext::ReasonPhrase;

/// The header block must end (blank line included) within this many bytes.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// A parsed header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Set when `Location:` names a local path and no `Status:` (or 200) was given: the server
    /// answers with that URL instead (RFC 3875 §6.2.2).
    pub local_redirect: Option<String>,
    /// `Content-Length:`, validated and parsed once here.
    pub content_length: Option<u64>,
    /// `Status: 404 No Such Invoice`: a reason other than the canonical one, sent
    /// as written (as Apache and lighttpd do), since some clients show it.
    pub reason: Option<ReasonPhrase>,
}

/// Why a function's output is not a valid header block. Each maps to a 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the function wrote nothing to stdout")]
    NoOutput,
    #[error("stdout ended before the blank line that closes the header block")]
    Unterminated,
    #[error(
        "no blank line within the first {MAX_HEADER_BLOCK} bytes of output: the header block is larger than that (a header line too long?), or it never ends"
    )]
    TooLarge,
    #[error("line {line} of the header block is not `Name: value`")]
    NotAHeader { line: usize, excerpt: String },
    #[error("line {line} of the header block: the header name holds characters a name cannot have")]
    BadName { line: usize, excerpt: String },
    #[error(
        "line {line} of the header block: a header value holds a control character (a byte below 0x20 other than tab, or 0x7F)"
    )]
    BadValue { line: usize, excerpt: String },
    #[error("line {line} of the header block: `Status:` is not a status code from 200 to 599")]
    BadStatus { line: usize, excerpt: String },
    #[error(
        "the output starts with an HTTP status line whose status is not a code from 200 to 599"
    )]
    BadStatusLine { excerpt: String },
    #[error("line {line} of the header block: `Content-Length:` is not a number of bytes")]
    BadContentLength { line: usize, excerpt: String },
    #[error(
        "line {line} of the header block: a second, different `Content-Length:`; a response has one length"
    )]
    RepeatedContentLength { line: usize, excerpt: String },
}

/// The start of an offending line, escaped, for watchdog's log only: error messages
/// sent to clients never include a function's bytes.
fn excerpt(line: &[u8]) -> String {
    let cut = &line[..line.len().min(80)];
    cut.escape_ascii().to_string()
}

impl EnvelopeError {
    /// What a valid response looks like, for the error page.
    pub const HINT: &'static str = "a function must print headers, a blank line, then the body, e.g. \
         \"Content-Type: text/plain\\n\\nhello\"; `Status: 404` sets the status";
}

/// Accumulates stdout until the header block is complete.
#[derive(Debug, Default)]
pub struct EnvelopeReader {
    buf: BytesMut,
    /// Start of the first line not yet parsed.
    line_start: usize,
    line_no: usize,
    status: Option<StatusCode>,
    /// The status came from an `nph-` first line (`HTTP/1.1 200 OK`), which a
    /// script writes to be sent as is: its 200 never makes a redirect.
    status_from_line: bool,
    reason: Option<ReasonPhrase>,
    location: Option<String>,
    content_length: Option<u64>,
    headers: HeaderMap,
}

impl EnvelopeReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk. Returns the envelope and the body bytes that followed it in the
    /// same chunk once the blank line has been seen.
    ///
    /// # Errors
    /// The first problem found, in line order; see [`EnvelopeError`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<(Envelope, Bytes)>, EnvelopeError> {
        self.buf.extend_from_slice(chunk);
        while let Some(offset) = memchr_newline(&self.buf[self.line_start..]) {
            let end = self.line_start + offset;
            if end + 1 > MAX_HEADER_BLOCK {
                return Err(EnvelopeError::TooLarge);
            }
            let mut line = &self.buf[self.line_start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            self.line_no += 1;
            if line.is_empty() {
                let body = self.buf.split_off(end + 1).freeze();
                return Ok(Some((self.finish_block(), body)));
            }
            let line = line.to_vec();
            self.parse_line(&line)?;
            self.line_start = end + 1;
        }
        if self.buf.len() >= MAX_HEADER_BLOCK {
            return Err(EnvelopeError::TooLarge);
        }
        Ok(None)
    }

    /// Called at end of output when [`push`](Self::push) has not completed a block.
    pub fn finish(&self) -> EnvelopeError {
        if self.buf.is_empty() {
            EnvelopeError::NoOutput
        } else {
            EnvelopeError::Unterminated
        }
    }

    fn parse_line(&mut self, line: &[u8]) -> Result<(), EnvelopeError> {
        let line_no = self.line_no;
        if line_no == 1
            && let Some(status_and_reason) = status_line(line)
        {
            // The same bytes as a `Status:` value may hold, refused alike.
            if HeaderValue::from_bytes(status_and_reason).is_err() {
                return Err(EnvelopeError::BadValue {
                    line: line_no,
                    excerpt: excerpt(line),
                });
            }
            let (status, reason) =
                parse_status(status_and_reason).ok_or_else(|| EnvelopeError::BadStatusLine {
                    excerpt: excerpt(line),
                })?;
            self.status = Some(status);
            self.status_from_line = true;
            self.reason = reason;
            return Ok(());
        }
        let colon =
            line.iter()
                .position(|&b| b == b':')
                .ok_or_else(|| EnvelopeError::NotAHeader {
                    line: line_no,
                    excerpt: excerpt(line),
                })?;
        let raw_name = &line[..colon];
        let raw_value = trim_whitespace(&line[colon + 1..]);
        let name = HeaderName::from_bytes(raw_name).map_err(|_| EnvelopeError::BadName {
            line: line_no,
            excerpt: excerpt(line),
        })?;
        let value = HeaderValue::from_bytes(raw_value).map_err(|_| EnvelopeError::BadValue {
            line: line_no,
            excerpt: excerpt(line),
        })?;
        if name.as_str() == "status" {
            let (status, reason) =
                parse_status(raw_value).ok_or_else(|| EnvelopeError::BadStatus {
                    line: line_no,
                    excerpt: excerpt(line),
                })?;
            self.status = Some(status);
            self.status_from_line = false;
            self.reason = reason;
            return Ok(());
        }
        if name == header::CONTENT_LENGTH {
            // hyper would refuse to send what does not frame a body: a length that
            // is not a u64 (digits only: `parse` takes a `+` too), or two of them
            // (the client got an empty reply).
            let Some(length) = (value.to_str().ok())
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                return Err(EnvelopeError::BadContentLength {
                    line: line_no,
                    excerpt: excerpt(line),
                });
            };
            match self.content_length.replace(length) {
                // The same length twice is one length (RFC 9110 §8.6).
                Some(first) if first == length => return Ok(()),
                Some(_) => {
                    return Err(EnvelopeError::RepeatedContentLength {
                        line: line_no,
                        excerpt: excerpt(line),
                    });
                }
                None => {}
            }
        }
        // A CGI body has no trailers, so no `Trailer` either.
        if super::hop_by_hop::is_hop_by_hop(&name) || name == header::TRAILER {
            return Ok(());
        }
        if name == header::LOCATION {
            self.location = Some(String::from_utf8_lossy(raw_value).into_owned());
        }
        // A response has one media type and one target: a second line replaces
        // the first, as Apache's CGI takes them (two would reach the client, and
        // each would pick one), as a second `Status:` does.
        if name == header::CONTENT_TYPE || name == header::LOCATION {
            self.headers.insert(name, value);
        } else {
            self.headers.append(name, value);
        }
        Ok(())
    }

    fn finish_block(&mut self) -> Envelope {
        let mut headers = std::mem::take(&mut self.headers);
        let local = self
            .location
            .as_deref()
            .filter(|l| l.starts_with('/') && !l.starts_with("//"));
        // `Status: 200` beside `Location:` redirects as no `Status:` does: old
        // scripts print both, and Apache's mod_cgi, which cannot tell a 200
        // given from its default, redirects them. Not an `nph-` status line,
        // which Apache passes on as written; nor an empty `Location:`.
        let redirects = self.location.as_deref().is_some_and(|l| !l.is_empty())
            && match self.status {
                None => true,
                Some(status) => status == StatusCode::OK && !self.status_from_line,
            };
        let (status, local_redirect) = match (redirects, local) {
            (false, _) => (self.status.unwrap_or(StatusCode::OK), None),
            (true, Some(path)) => {
                headers.remove(header::LOCATION);
                (StatusCode::OK, Some(path.to_owned()))
            }
            (true, None) => (StatusCode::FOUND, None),
        };
        if redirects {
            // "OK" is no reason for a 302.
            self.reason = None;
        }
        Envelope {
            status,
            headers,
            local_redirect,
            content_length: self.content_length,
            reason: self.reason.take(),
        }
    }
}

/// Removes the headers `drops` picks from a header block (a redirecting
/// block's body headers, a 304's body description). `HeaderMap` has no
/// `retain`: the names are gathered first, allocating only when a block
/// has such headers.
pub fn remove_headers(headers: &mut HeaderMap, drops: impl Fn(&HeaderName) -> bool) {
    let dropped: Vec<HeaderName> = headers.keys().filter(|name| drops(name)).cloned().collect();
    for name in dropped {
        headers.remove(name);
    }
}

fn memchr_newline(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `HTTP/1.0 403 Forbidden` as the first line: the status line of a script
/// written for Apache's non-parsed-header mode (`nph-` scripts), which lighttpd
/// also takes from any CGI program. Its status and reason count as `Status:`
/// would; the rest of the output is read as a header block all the same, since
/// watchdog frames the response itself. Returns the part after the version.
fn status_line(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|b| *b == b' ')?;
    let version = &rest[..space];
    let is_version = matches!(version, [major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit())
        || matches!(version, [major] if major.is_ascii_digit());
    is_version.then(|| trim_whitespace(&rest[space..]))
}

/// `404`, `404 Not Found`, `404 No Such Invoice`. The reason is kept only when it
/// differs from the canonical one (hyper writes that itself) and is one a status
/// line can carry (header values and reasons allow the same bytes, so the check
/// is a safeguard).
fn parse_status(value: &[u8]) -> Option<(StatusCode, Option<ReasonPhrase>)> {
    let code = value.split(|b| *b == b' ' || *b == b'\t').next()?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = StatusCode::from_bytes(code).ok()?;
    if !super::is_answer_status(status.as_u16()) {
        return None;
    }
    let reason = trim_whitespace(&value[3..]);
    let canonical = status.canonical_reason().map(str::as_bytes);
    let reason = (!reason.is_empty() && canonical != Some(reason))
        .then(|| ReasonPhrase::try_from(reason).ok())
        .flatten();
    Some((status, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(input: &[u8]) -> Result<Option<(Envelope, Bytes)>, EnvelopeError> {
        EnvelopeReader::new().push(input)
    }

    fn parse_whole(input: &[u8]) -> (Envelope, Bytes) {
        parse(input).expect("valid").expect("complete")
    }

    #[test]
    fn plain_block_lf_and_crlf() {
        for input in [
            &b"Content-Type: text/plain\n\nhello"[..],
            &b"Content-Type: text/plain\r\n\r\nhello"[..],
            &b"content-type:text/plain  \r\n\nhello"[..],
        ] {
            let (env, body) = parse_whole(input);
            assert_eq!(env.status, StatusCode::OK);
            assert_eq!(env.headers[header::CONTENT_TYPE], "text/plain");
            assert_eq!(&body[..], b"hello");
        }
    }

    #[test]
    fn a_second_content_type_or_location_replaces_the_first() {
        let (env, _) = parse_whole(
            b"Content-Type: text/html\nSet-Cookie: a=1\nLocation: https://a.example/\nContent-Type: text/plain\nSet-Cookie: b=2\nLocation: https://b.example/\n\n",
        );
        let all = |name| env.headers.get_all(name).iter().collect::<Vec<_>>();
        assert_eq!(all(header::CONTENT_TYPE), ["text/plain"]);
        assert_eq!(all(header::LOCATION), ["https://b.example/"]);
        // Other repeated headers stay repeated.
        assert_eq!(all(header::SET_COOKIE), ["a=1", "b=2"]);
    }

    #[test]
    fn a_custom_reason_is_kept_and_the_canonical_one_left_to_hyper() {
        let reason = |input: &[u8]| {
            parse_whole(input)
                .0
                .reason
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        };
        assert_eq!(
            reason(b"Status: 404 No Such Invoice\n\n").as_deref(),
            Some("No Such Invoice")
        );
        assert_eq!(
            reason(b"Status: 503\t busy \r\n\r\n").as_deref(),
            Some("busy")
        );
        assert_eq!(reason(b"Status: 404 Not Found\n\n"), None);
        assert_eq!(reason(b"Status: 404\n\n"), None);
        assert_eq!(reason(b"X-A: 1\n\n"), None);
    }

    #[test]
    fn status_forms() {
        let table: &[(&[u8], u16)] = &[
            (b"Status: 404 Not Found\n\n", 404),
            (b"Status: 201\n\n", 201),
            (b"STATUS:503 busy\r\n\r\n", 503),
            (b"Location: https://example.com/\n\n", 302),
            (b"Status: 301\nLocation: https://example.com/\n\n", 301),
            (b"Status: 200 OK\nLocation: https://example.com/\n\n", 302),
            (b"X-A: 1\n\n", 200),
        ];
        for (input, want) in table {
            assert_eq!(parse_whole(input).0.status.as_u16(), *want, "{input:?}");
        }
    }

    #[test]
    fn bad_status_is_refused() {
        for input in [
            &b"Status: abc\n\n"[..],
            b"Status: 99\n\n",
            b"Status: 101\n\n",
            b"Status: 600\n\n",
        ] {
            assert!(
                matches!(parse(input), Err(EnvelopeError::BadStatus { line: 1, .. })),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_status_line_first_sets_the_status_as_nph_scripts_write_it() {
        let (env, body) =
            parse_whole(b"HTTP/1.0 403 Keep Out\r\nContent-Type: text/plain\r\n\r\nno");
        assert_eq!(env.status, StatusCode::FORBIDDEN);
        assert_eq!(
            env.reason.as_ref().map(ReasonPhrase::as_bytes),
            Some(&b"Keep Out"[..])
        );
        assert_eq!(env.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(&body[..], b"no");
        for (input, want) in [
            (&b"HTTP/1.1 200 OK\n\n"[..], 200),
            (b"HTTP/2 404\nX-A: 1\n\n", 404),
            // A `Status:` after it has the last word, as a second `Status:` does.
            (b"HTTP/1.1 200 OK\nStatus: 503\n\n", 503),
        ] {
            assert_eq!(parse_whole(input).0.status.as_u16(), want, "{input:?}");
        }
        assert!(matches!(
            parse(b"HTTP/1.1 600 Odd\n\n"),
            Err(EnvelopeError::BadStatusLine { .. })
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 O\x01K\n\n"),
            Err(EnvelopeError::BadValue { line: 1, .. })
        ));
        // Only as the first line, and only with a version.
        for input in [
            &b"X-A: 1\nHTTP/1.1 200 OK\n\n"[..],
            b"HTTP/x 200 OK\n\n",
            b"HTTP/1.1\n\n",
        ] {
            assert!(
                matches!(parse(input), Err(EnvelopeError::NotAHeader { .. })),
                "{input:?}"
            );
        }
    }

    #[test]
    fn local_location_is_an_internal_redirect() {
        let (env, _) = parse_whole(b"Location: /api/other?x=1\n\n");
        assert_eq!(env.local_redirect.as_deref(), Some("/api/other?x=1"));
        assert!(env.headers.get(header::LOCATION).is_none());
        // Protocol-relative is a client redirect, not a local path.
        let (env, _) = parse_whole(b"Location: //evil.example/\n\n");
        assert_eq!(env.local_redirect, None);
        assert_eq!(env.status, StatusCode::FOUND);
        // `Status: 200` beside it redirects too, as under Apache; any other
        // status is the script's answer, its `Location` kept.
        let (env, _) = parse_whole(b"Status: 200 OK\nLocation: /api/other\n\n");
        assert_eq!(env.local_redirect.as_deref(), Some("/api/other"));
        assert_eq!(env.reason, None);
        // An `nph-` status line is sent as written, and an empty `Location`
        // names nothing to go to.
        let (env, _) = parse_whole(b"HTTP/1.1 200 OK\nLocation: /api/items/7\n\n");
        assert_eq!(env.local_redirect, None);
        assert_eq!(env.status, StatusCode::OK);
        let (env, _) = parse_whole(b"Status: 200\nLocation:\n\n");
        assert_eq!(env.local_redirect, None);
        assert_eq!(env.status, StatusCode::OK);
        let (env, _) = parse_whole(b"Status: 201\nLocation: /api/other/1\n\n");
        assert_eq!(env.local_redirect, None);
        assert_eq!(env.status, StatusCode::CREATED);
        assert_eq!(env.headers[header::LOCATION], "/api/other/1");
    }

    #[test]
    fn repeated_headers_kept_hop_by_hop_dropped() {
        let (env, _) = parse_whole(
            b"Set-Cookie: a=1\nSet-Cookie: b=2\nConnection: close\nTransfer-Encoding: chunked\n\n",
        );
        let cookies: Vec<_> = env.headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(env.headers.get(header::CONNECTION).is_none());
        assert!(env.headers.get(header::TRANSFER_ENCODING).is_none());
    }

    #[test]
    fn injection_and_garbage_are_refused() {
        assert!(matches!(
            parse(b"X-A: a\rSet-Cookie: evil\n\n"),
            Err(EnvelopeError::BadValue { .. })
        ));
        assert!(matches!(
            parse(b"X-A: a\0b\n\n"),
            Err(EnvelopeError::BadValue { .. })
        ));
        assert!(matches!(
            parse(b"hello world\n\n"),
            Err(EnvelopeError::NotAHeader { line: 1, .. })
        ));
        assert!(matches!(
            parse(b"Bad Name: x\n\n"),
            Err(EnvelopeError::BadName { .. })
        ));
        assert!(matches!(
            parse(b"Content-Length: ten\n\n"),
            Err(EnvelopeError::BadContentLength { .. })
        ));
        // Past u64: hyper could not frame it.
        assert!(matches!(
            parse(b"Content-Length: 99999999999999999999999\n\n"),
            Err(EnvelopeError::BadContentLength { .. })
        ));
        assert!(matches!(
            parse(b"Content-Length: 3\ncontent-LENGTH: 5\n\n"),
            Err(EnvelopeError::RepeatedContentLength { line: 2, .. })
        ));
        let (same, _) = parse_whole(b"Content-Length: 3\nContent-Length: 3\n\nabc");
        assert_eq!(
            same.headers.get_all(header::CONTENT_LENGTH).iter().count(),
            1
        );
        assert_eq!(
            parse(b"Content-Length: 18446744073709551615\n\n")
                .unwrap()
                .unwrap()
                .0
                .headers[header::CONTENT_LENGTH],
            "18446744073709551615"
        );
        assert_eq!(
            parse(&vec![b'x'; MAX_HEADER_BLOCK]),
            Err(EnvelopeError::TooLarge)
        );
    }

    #[test]
    fn error_messages_never_carry_the_functions_bytes() {
        for input in [
            &b"SECRET\n\n"[..],
            b"SEC RET: x\n\n",
            b"X: SEC\rRET\n\n",
            b"Status: SECRET\n\n",
            b"HTTP/1.1 SECRET\n\n",
            b"Content-Length: SECRET\n\n",
        ] {
            let message = parse(input).unwrap_err().to_string();
            assert!(!message.contains("SEC"), "{message}");
        }
    }

    #[test]
    fn incomplete_and_empty_output() {
        let mut reader = EnvelopeReader::new();
        assert_eq!(reader.push(b"Content-Type: text/plain\n"), Ok(None));
        assert_eq!(reader.finish(), EnvelopeError::Unterminated);
        assert_eq!(EnvelopeReader::new().finish(), EnvelopeError::NoOutput);
    }

    #[test]
    fn empty_block_is_allowed() {
        let (env, body) = parse_whole(b"\nbody");
        assert_eq!(env.status, StatusCode::OK);
        assert_eq!(&body[..], b"body");
    }

    /// Feeds `input` in pieces cut at `cuts`, returning what the whole-input parse would.
    fn parse_split(
        input: &[u8],
        cuts: &[usize],
    ) -> Result<Option<(Envelope, Vec<u8>)>, EnvelopeError> {
        let mut reader = EnvelopeReader::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.push(input.len());
        points.sort_unstable();
        let mut start = 0;
        for point in points {
            if let Some((env, first)) = reader.push(&input[start..point])? {
                let mut body = first.to_vec();
                body.extend_from_slice(&input[point..]);
                return Ok(Some((env, body)));
            }
            start = point;
        }
        Ok(None)
    }

    fn header_like() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just(b"Status: 404 Not Found".to_vec()),
            Just(b"Location: /api/x".to_vec()),
            Just(b"Location: http://x/".to_vec()),
            Just(b"Content-Type: text/plain".to_vec()),
            Just(b"Set-Cookie: a=b".to_vec()),
            Just(b"Connection: close".to_vec()),
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..20),
        ];
        let eol = prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec())];
        proptest::collection::vec((line, eol), 0..8).prop_map(|lines| {
            lines
                .into_iter()
                .flat_map(|(l, e)| l.into_iter().chain(e))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&input);
        }

        #[test]
        fn any_split_gives_the_same_result(
            input in prop_oneof![header_like(), proptest::collection::vec(any::<u8>(), 0..512)],
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let whole = parse_split(&input, &[]);
            prop_assert_eq!(parse_split(&input, &cuts), whole);
        }
    }
}
