//! Route patterns as file names spell them: `users`, `[id]`, `[...path]`, `[[...path]]`.

use std::fmt;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Static(String),
    /// `[name]`: exactly one path segment.
    Param(String),
    /// `[...name]`: one or more segments; must be last.
    CatchAll(String),
    /// `[[...name]]`: zero or more segments; must be last.
    OptionalCatchAll(String),
}

impl Segment {
    /// Reads a file or folder name (extension already removed).
    ///
    /// # Errors
    /// A bracketed name that is empty or not a plain identifier, with the reason.
    pub fn parse(name: &str) -> Result<Self, String> {
        let (inner, make): (&str, fn(String) -> Segment) = if let Some(inner) = name
            .strip_prefix("[[...")
            .and_then(|n| n.strip_suffix("]]"))
        {
            (inner, Segment::OptionalCatchAll)
        } else if let Some(inner) = name.strip_prefix("[...").and_then(|n| n.strip_suffix(']')) {
            (inner, Segment::CatchAll)
        } else if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            (inner, Segment::Param)
        } else if name.contains('[') || name.contains(']') {
            return Err(format!(
                "`{name}` mixes brackets with text; a dynamic segment is the whole name, like `[id]`"
            ));
        } else {
            return Ok(Segment::Static(name.to_owned()));
        };
        let valid = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(make(inner.to_owned()))
        } else {
            Err(format!(
                "`{name}`: a parameter name is letters, digits, `_` or `-`"
            ))
        }
    }

    pub fn is_catch_all(&self) -> bool {
        matches!(self, Segment::CatchAll(_) | Segment::OptionalCatchAll(_))
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Static(s) => f.write_str(s),
            Segment::Param(p) => write!(f, "[{p}]"),
            Segment::CatchAll(p) => write!(f, "[...{p}]"),
            Segment::OptionalCatchAll(p) => write!(f, "[[...{p}]]"),
        }
    }
}

/// A whole pattern, as shown in `watchdog routes`: `/api/users/[id]`.
pub fn display(prefix: &str, segments: &[Segment]) -> String {
    let mut out = prefix.trim_end_matches('/').to_owned();
    for segment in segments {
        out.push('/');
        out.push_str(&segment.to_string());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(Segment::parse("users"), Ok(Segment::Static("users".into())));
        assert_eq!(Segment::parse("[id]"), Ok(Segment::Param("id".into())));
        assert_eq!(
            Segment::parse("[...path]"),
            Ok(Segment::CatchAll("path".into()))
        );
        assert_eq!(
            Segment::parse("[[...slug]]"),
            Ok(Segment::OptionalCatchAll("slug".into()))
        );
        assert!(Segment::parse("[]").is_err());
        assert!(Segment::parse("a[id]").is_err());
        assert!(Segment::parse("[a b]").is_err());
        assert!(Segment::parse("[[id]]").is_err());
    }

    #[test]
    fn displays_patterns() {
        let segs = [Segment::Static("users".into()), Segment::Param("id".into())];
        assert_eq!(display("/api", &segs), "/api/users/[id]");
        assert_eq!(display("/", &segs), "/users/[id]");
        assert_eq!(display("/", &[]), "/");
    }
}
