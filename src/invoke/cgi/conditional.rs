//! Conditional GET for CGI answers: a client that already holds what a
//! function answers gets a 304 instead of the body again.
//!
//! Apache's mod_cgi does this for scripts (it checks the script's `ETag` and
//! `Last-Modified` against the request's validators once the header block is
//! read), so a CGI program that sets validators and leaves the conditional
//! logic to its server, as most do, saves its clients the download under
//! Apache and must here too. Unlike Apache, an explicit `Status: 200` is
//! judged as well: wsgiref's CGI handler writes one on every answer, and the
//! validators mean the same either way.
//!
//! Only GET and HEAD are judged. Any other method has done its work by the
//! time its header block is read, so a 412 then would claim a change that
//! already happened was refused. The order of the checks is RFC 9110 §13.2.2;
//! the comparisons are the `headers` crate's.

use std::time::SystemTime;

use axum::http::{HeaderMap, Method, StatusCode, header};
use headers::{ETag, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfUnmodifiedSince};

/// The validators a GET or HEAD request carries, read once when the function
/// starts. `None` from [`Conditions::of`] (the common case) costs one lookup
/// per validator header and nothing later.
#[derive(Debug, Default)]
pub struct Conditions {
    if_match: Option<IfMatch>,
    if_unmodified_since: Option<IfUnmodifiedSince>,
    if_none_match: Option<IfNoneMatch>,
    if_modified_since: Option<IfModifiedSince>,
}

impl Conditions {
    /// The request's validators, when it is a GET or HEAD that has any.
    /// A validator that does not parse is ignored, as RFC 9110 says a
    /// recipient must do with an invalid date (and as Apache does with both).
    pub fn of(method: &Method, request: &HeaderMap) -> Option<Self> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let conditions = Self {
            if_match: request.typed_get(),
            if_unmodified_since: request.typed_get(),
            if_none_match: request.typed_get(),
            if_modified_since: request.typed_get(),
        };
        let any = conditions.if_match.is_some()
            || conditions.if_unmodified_since.is_some()
            || conditions.if_none_match.is_some()
            || conditions.if_modified_since.is_some();
        any.then_some(conditions)
    }

    /// What a 200 answer with these response headers becomes: `None` to send
    /// it as it is, or 304 (the client's copy is current) or 412 (a
    /// precondition of the request failed).
    pub fn verdict(&self, response: &HeaderMap) -> Option<StatusCode> {
        let etag: Option<ETag> = response.typed_get();
        let last_modified: Option<SystemTime> = response
            .typed_get::<headers::LastModified>()
            .map(SystemTime::from);
        if let Some(if_match) = &self.if_match {
            // `*` holds whenever there is a current representation, as a 200 is.
            let holds = if_match.is_any()
                || etag
                    .as_ref()
                    .is_some_and(|tag| if_match.precondition_passes(tag));
            if !holds {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        } else if let (Some(since), Some(modified)) = (&self.if_unmodified_since, last_modified)
            && !since.precondition_passes(modified)
        {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
        if let Some(if_none_match) = &self.if_none_match {
            let matches = if *if_none_match == IfNoneMatch::any() {
                true
            } else {
                etag.as_ref()
                    .is_some_and(|tag| !if_none_match.precondition_passes(tag))
            };
            return matches.then_some(StatusCode::NOT_MODIFIED);
        }
        if let (Some(since), Some(modified)) = (&self.if_modified_since, last_modified)
            && !since.is_modified(modified)
        {
            return Some(StatusCode::NOT_MODIFIED);
        }
        None
    }
}

/// Fits the 200's headers to the `verdict` that replaces it. A 412 keeps
/// only its cookies, as Apache keeps only a script's cookies on an error: the
/// rest described the page, and a shared cache would store a 412 that kept
/// its `Cache-Control`. A 304 drops what described the body it does not have.
pub fn fit_headers(verdict: StatusCode, headers: &mut HeaderMap) {
    if verdict == StatusCode::PRECONDITION_FAILED {
        let cookies: Vec<_> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        headers.clear();
        for cookie in cookies {
            headers.append(header::SET_COOKIE, cookie);
        }
        return;
    }
    drop_body_description(headers);
}

/// Takes from a 304 the headers that describe the body it does not have. It
/// keeps its validators, caching headers and cookies (RFC 9110 §15.4.5);
/// `Content-Location` names a resource, not this body, and stays.
fn drop_body_description(headers: &mut HeaderMap) {
    crate::invoke::envelope::remove_headers(headers, |name| {
        name.as_str().starts_with("content-") && *name != header::CONTENT_LOCATION
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request(pairs: &[(&'static str, &'static str)]) -> Option<Conditions> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        Conditions::of(&Method::GET, &headers)
    }

    fn answer(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const MONDAY: &str = "Mon, 02 Nov 2026 10:00:00 GMT";
    const TUESDAY: &str = "Tue, 03 Nov 2026 10:00:00 GMT";

    #[test]
    fn a_request_without_validators_or_not_a_get_is_not_judged() {
        assert!(request(&[("accept", "*/*")]).is_none());
        let mut headers = HeaderMap::new();
        headers.insert("if-none-match", HeaderValue::from_static("\"a\""));
        assert!(Conditions::of(&Method::POST, &headers).is_none());
        assert!(Conditions::of(&Method::HEAD, &headers).is_some());
    }

    #[test]
    fn a_matching_etag_is_not_modified_weakly_compared() {
        let c = request(&[("if-none-match", "\"x\", W/\"v1\"")]).unwrap();
        assert_eq!(
            c.verdict(&answer(&[("etag", "\"v1\"")])),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(c.verdict(&answer(&[("etag", "\"v2\"")])), None);
        assert_eq!(c.verdict(&answer(&[])), None);
        let any = request(&[("if-none-match", "*")]).unwrap();
        assert_eq!(any.verdict(&answer(&[])), Some(StatusCode::NOT_MODIFIED));
    }

    #[test]
    fn if_none_match_outranks_if_modified_since() {
        let c = request(&[("if-none-match", "\"old\""), ("if-modified-since", TUESDAY)]).unwrap();
        let headers = answer(&[("etag", "\"new\""), ("last-modified", MONDAY)]);
        assert_eq!(c.verdict(&headers), None);
    }

    #[test]
    fn an_unchanged_date_is_not_modified() {
        let c = request(&[("if-modified-since", MONDAY)]).unwrap();
        assert_eq!(
            c.verdict(&answer(&[("last-modified", MONDAY)])),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(c.verdict(&answer(&[("last-modified", TUESDAY)])), None);
        let garbled = request(&[("if-modified-since", "yesterday")]);
        assert!(garbled.is_none(), "an unparsable date is ignored");
    }

    #[test]
    fn a_failed_precondition_is_412_and_comes_first() {
        let c = request(&[("if-match", "\"v1\""), ("if-none-match", "\"v2\"")]).unwrap();
        assert_eq!(
            c.verdict(&answer(&[("etag", "\"v2\"")])),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        // If-Match compares strongly: a weak tag never satisfies it.
        assert_eq!(
            c.verdict(&answer(&[("etag", "W/\"v1\"")])),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(c.verdict(&answer(&[("etag", "\"v1\"")])), None);
        let star = request(&[("if-match", "*")]).unwrap();
        assert_eq!(star.verdict(&answer(&[])), None);
        let since = request(&[("if-unmodified-since", MONDAY)]).unwrap();
        assert_eq!(
            since.verdict(&answer(&[("last-modified", TUESDAY)])),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(since.verdict(&answer(&[("last-modified", MONDAY)])), None);
    }

    #[test]
    fn a_412_keeps_only_its_cookies() {
        let mut headers = answer(&[
            ("cache-control", "public, max-age=60"),
            ("etag", "\"v1\""),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        fit_headers(StatusCode::PRECONDITION_FAILED, &mut headers);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn a_304_keeps_validators_and_cookies_but_not_the_body_description() {
        let mut headers = answer(&[
            ("content-type", "text/html"),
            ("content-length", "10"),
            ("content-location", "/a"),
            ("etag", "\"v1\""),
            ("set-cookie", "a=1"),
            ("cache-control", "max-age=60"),
        ]);
        drop_body_description(&mut headers);
        let mut names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["cache-control", "content-location", "etag", "set-cookie"]
        );
    }
}
