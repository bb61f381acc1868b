//! The request's `Expect` (RFC 9110 §10.1.1). hyper meets `100-continue`
//! itself (the 100 goes out when the body is first read); no other
//! expectation is defined, and a client that sent one waits on a server that
//! understood it. A 417 tells it that this one did not, as Apache answers,
//! instead of serving the request as if nothing had been asked.

use axum::http::{HeaderMap, header};

/// An expectation watchdog cannot meet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request expects `{0}`, which watchdog cannot meet (only `100-continue` is defined)")]
pub struct UnmetExpectation(pub String);

/// # Errors
/// When an `Expect` member is anything but `100-continue`.
pub fn check(headers: &HeaderMap) -> Result<(), UnmetExpectation> {
    super::list_header::try_each_member(headers, header::EXPECT, |member| {
        if member.eq_ignore_ascii_case("100-continue") {
            Ok(())
        } else {
            Err(UnmetExpectation(super::list_header::shown(member)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expecting(values: &[&str]) -> Result<(), UnmetExpectation> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::EXPECT, value.parse().unwrap());
        }
        check(&headers)
    }

    #[test]
    fn only_100_continue_is_met() {
        assert_eq!(expecting(&[]), Ok(()));
        assert_eq!(expecting(&["100-continue"]), Ok(()));
        assert_eq!(expecting(&["100-Continue"]), Ok(()));
        assert_eq!(expecting(&[""]), Ok(()));
        assert_eq!(expecting(&["foo"]), Err(UnmetExpectation("foo".into())));
        assert_eq!(
            expecting(&["100-continue, 200-ok"]),
            Err(UnmetExpectation("200-ok".into()))
        );
        assert_eq!(
            expecting(&["100-continue", "x=1"]),
            Err(UnmetExpectation("x=1".into()))
        );
    }
}
