//! Headers whose value is a comma-separated list (RFC 9110 §5.6.1), which a
//! client may also split over several fields: `Transfer-Encoding`, `Expect`.

use axum::http::HeaderMap;
use axum::http::header::AsHeaderName;

/// Calls `check` on each member of every `name` field, in order, until one
/// fails. Empty members (`a, , b`) are skipped, as the list syntax allows.
///
/// # Errors
/// The first error `check` returns.
pub fn try_each_member<E>(
    headers: &HeaderMap,
    name: impl AsHeaderName,
    mut check: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    for value in headers.get_all(name) {
        let text = String::from_utf8_lossy(value.as_bytes());
        for member in text.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            check(member)?;
        }
    }
    Ok(())
}

/// A member as an error message shows it: at most 40 characters, so that a
/// hostile header cannot fill the log or the page.
pub fn shown(member: &str) -> String {
    member.chars().take(40).collect()
}
