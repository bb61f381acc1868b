//! The name a Lambda runtime is told its function has
//! (`AWS_LAMBDA_FUNCTION_NAME`, and the log group built from it).

/// The longest name Lambda allows.
const LONGEST: usize = 64;

/// The function's name as Lambda would allow one (letters, digits, `-`, `_`,
/// at most 64): its route's segments joined by `-`, a dynamic segment by its
/// parameter's name. `/api/[[...proxy]]` is `api-proxy`; it was
/// `api-----proxy--`, each bracket and dot made a `-`.
pub fn of_route(pattern: &str) -> String {
    let mut name = String::new();
    for segment in pattern.split('/').filter(|s| !s.is_empty()) {
        let bare = segment
            .trim_start_matches('[')
            .trim_start_matches("...")
            .trim_end_matches(']');
        for c in bare.chars() {
            let c = if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            };
            // One `-` between words, none leading.
            if c != '-' || !(name.is_empty() || name.ends_with('-')) {
                name.push(c);
            }
        }
        if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(LONGEST);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "function".to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_its_routes_segments_as_lambda_allows() {
        assert_eq!(of_route("/api/[[...proxy]]"), "api-proxy");
        assert_eq!(of_route("/api/users/[id]"), "api-users-id");
        assert_eq!(of_route("/api/hello"), "api-hello");
        assert_eq!(of_route("/api/a.b/c d"), "api-a-b-c-d");
        assert_eq!(of_route("/"), "function");
        assert_eq!(of_route(&format!("/api/{}", "x".repeat(100))).len(), 64);
    }
}
