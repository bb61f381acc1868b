//! GET /api/rust-hello — a compiled function. Any binary that prints a CGI header
//! block works; this one echoes the request line and the route parameters as JSON
//! (by hand, to stay free of dependencies).

use std::env;
use std::io::{self, Write};

fn main() -> io::Result<()> {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let body = format!(
        "{{\"method\":{:?},\"path\":{:?},\"query\":{:?},\"params\":{}}}\n",
        var("REQUEST_METHOD"),
        var("SCRIPT_NAME"),
        var("QUERY_STRING"),
        env::var("WATCHDOG_PARAMS").unwrap_or_else(|_| "{}".into()),
    );
    let mut out = io::stdout().lock();
    write!(out, "Content-Type: application/json\r\n\r\n{body}")?;
    out.flush()
}
