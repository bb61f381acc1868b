//! The environment a CGI function starts with (CONTRACT §3, RFC 3875 §4.1).
//!
//! The child's environment is cleared; only what is built here reaches it. Request
//! headers become `HTTP_*` variables with two guards: `Proxy` never becomes
//! `HTTP_PROXY` (httpoxy), and a header name holding `_` or any character outside
//! letters, digits and `-` is dropped, as Apache does, so `X_Forwarded_For` cannot pose
//! as `X-Forwarded-For` once both are spelled `HTTP_X_FORWARDED_FOR`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use axum::http::{HeaderMap, header};

use crate::config::file::EnvStyle;
use crate::invoke::Invocation;
use crate::process::env_block::EnvBlock;
use crate::process::spawn::CStringArray;
use crate::routes::{Function, ParamValue};

pub const SERVER_SOFTWARE: &str = concat!("watchdog/", env!("CARGO_PKG_VERSION"));

/// A CGI invocation's environment, in the order it is applied (later entries
/// win): the function's own variables first, then the meta-variables, which a
/// user's `--env` cannot override. Those that are the same for every request
/// ([`constant_variables`]) are built once with the function's own, into its
/// [`EnvBlock`]; the request's come on top.
pub struct Environment {
    function: Arc<Function>,
    request: Vec<(OsString, OsString)>,
}

impl Environment {
    /// The environment `invocation` starts its function with.
    pub fn of(invocation: &Invocation) -> Self {
        Self {
            function: Arc::clone(&invocation.route.function),
            request: request_variables(invocation),
        }
    }

    /// The function's block, built at its first start.
    fn block(&self) -> &EnvBlock {
        self.function
            .env_block
            .get_or_init(|| EnvBlock::new(&function_variables(&self.function)))
    }

    /// Every variable, in the order applied (for std's spawner).
    pub fn pairs(&self) -> Vec<(OsString, OsString)> {
        let mut all = function_variables(&self.function);
        all.extend(self.request.iter().cloned());
        all
    }

    /// The value `name` ends up with.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.request
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_os_str())
            .or_else(|| self.block().get(name))
    }

    /// The `envp` the lean spawner passes to `execve`.
    ///
    /// # Errors
    /// `InvalidInput` when a variable holds a NUL byte.
    pub fn envp(&self) -> std::io::Result<CStringArray<'_>> {
        self.block().envp(&self.request)
    }
}

/// What `function` starts with whatever the request: its own variables, less
/// those named like a meta-variable that only some requests set (a `--env
/// CONTENT_LENGTH=100` must not reach a request without a body), then the
/// meta-variables that are the same for every request.
fn function_variables(function: &Function) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = function
        .settings
        .env
        .iter()
        .filter(|(name, _)| !is_conditional_meta_variable(name))
        .cloned()
        .collect();
    env.extend(constant_variables(function));
    env
}

/// Meta-variables set only when the request has them.
fn is_conditional_meta_variable(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name == b"CONTENT_LENGTH"
        || name == b"CONTENT_TYPE"
        || name == b"HTTPS"
        || name == b"REMOTE_PORT"
        || name == b"REDIRECT_URL"
        || name == b"REDIRECT_QUERY_STRING"
        || name.starts_with(b"WATCHDOG_PARAM_")
}

/// The meta-variables that are the same for every request to `function`.
fn constant_variables(function: &Function) -> Vec<(OsString, OsString)> {
    let document_root = &function.document_root;
    vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_SOFTWARE".into(), SERVER_SOFTWARE.into()),
        (
            "SCRIPT_FILENAME".into(),
            document_root.join(&function.file.relative).into_os_string(),
        ),
        ("DOCUMENT_ROOT".into(), document_root.as_os_str().to_owned()),
        ("REQUEST_SCHEME".into(), "http".into()),
        ("REDIRECT_STATUS".into(), "200".into()),
    ]
}

/// The request's variables: RFC 3875's meta-variables, watchdog's own, the
/// `HTTP_*` ones and, for the OpenFaaS style, theirs.
fn request_variables(invocation: &Invocation) -> Vec<(OsString, OsString)> {
    let route = &invocation.route;
    let function = &route.function.settings;
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(32);
    let mut set = |name: &str, value: &str| env.push((name.into(), value.into()));

    set("SERVER_PROTOCOL", &format!("{:?}", invocation.version));
    set("REQUEST_METHOD", invocation.method.as_str());
    set("QUERY_STRING", invocation.uri.query().unwrap_or(""));
    let request_uri = invocation.uri.path_and_query().map_or_else(
        || invocation.uri.path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    set("REQUEST_URI", &request_uri);
    // As Apache sets them for an internal redirect: where the client asked.
    if let Some(from) = &invocation.redirected_from {
        set("REDIRECT_URL", from.path());
        if let Some(query) = from.query() {
            set("REDIRECT_QUERY_STRING", query);
        }
    }
    set("SCRIPT_NAME", &route.script_name);
    set("PATH_INFO", &route.path_info);
    set(
        "SERVER_NAME",
        &server_name(&invocation.headers, invocation.local),
    );
    // The port the client reached, when a trusted proxy says which: a
    // script building its own URLs behind a TLS balancer made them
    // `https://host:3000/` from watchdog's own.
    let server_port = (invocation.forwarded)
        .and_then(|forwarded| forwarded.port)
        .unwrap_or_else(|| invocation.local.port());
    set("SERVER_PORT", &server_port.to_string());
    // Not in RFC 3875, but every CGI host sets it, and PHP code reads it.
    set("SERVER_ADDR", &invocation.local.ip().to_string());
    set("REMOTE_ADDR", &invocation.client_ip().to_string());
    // A client a proxy named: the connection's port is the proxy's, not its.
    // (A proxy that named none but itself: its port is right.)
    let named_by_proxy = invocation
        .forwarded
        .is_some_and(|forwarded| forwarded.client != invocation.client.ip().to_canonical());
    if !named_by_proxy {
        set("REMOTE_PORT", &invocation.client.port().to_string());
    }
    if invocation
        .forwarded
        .is_some_and(|forwarded| forwarded.https)
    {
        set("HTTPS", "on");
        set("REQUEST_SCHEME", "https");
    }
    if let Some(length) = invocation.body.content_length() {
        set("CONTENT_LENGTH", &length.to_string());
    }
    if let Some(content_type) = invocation.headers.get(header::CONTENT_TYPE) {
        env.push((
            "CONTENT_TYPE".into(),
            OsString::from_vec(content_type.as_bytes().to_vec()),
        ));
    }
    let mut set = |name: &str, value: &str| env.push((name.into(), value.into()));
    set("WATCHDOG_REQUEST_ID", &invocation.request_id);
    set(
        "WATCHDOG_DEADLINE_MS",
        &invocation.deadline_epoch_ms.to_string(),
    );
    for (name, value) in &route.params {
        let text = match value {
            ParamValue::One(one) => one.clone(),
            ParamValue::Many(many) => many.join("/"),
        };
        set(&format!("WATCHDOG_PARAM_{}", env_name(name)), &text);
    }
    set("WATCHDOG_PARAMS", &route.params_json());
    env.extend(http_variables(&invocation.headers));
    if function.env_style == EnvStyle::Openfaas {
        env.extend(openfaas_variables(invocation));
    }
    env
}

/// The request header no function is given (httpoxy): as `HTTP_PROXY`, or
/// `Http_Proxy`, or a header a warm worker's framework makes into either, it
/// would be taken by HTTP libraries as the proxy for the function's own
/// outgoing calls, chosen by the client. Libraries that lower-case proxy
/// variables (Perl's LWP) read every spelling.
pub const HTTPOXY_HEADER: &str = "proxy";

/// The OpenFaaS classic watchdog's variables: `Http_Method`, `Http_Path`,
/// `Http_Query`, `Http_Content_Length`, and `Http_<Header>` with `-` turned into `_`
/// and the header's canonical capitalisation (`Http_X_Call_Id`); no header can
/// pose as one of the first four.
pub fn openfaas_variables(invocation: &Invocation) -> Vec<(OsString, OsString)> {
    let mut env = vec![
        (
            OsString::from("Http_Method"),
            OsString::from(invocation.method.as_str()),
        ),
        (
            OsString::from("Http_Path"),
            OsString::from(invocation.uri.path()),
        ),
        (
            OsString::from("Http_Query"),
            OsString::from(invocation.uri.query().unwrap_or("")),
        ),
    ];
    if let Some(length) = invocation.body.content_length() {
        env.push(("Http_Content_Length".into(), length.to_string().into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in &invocation.headers {
        // A header named `Path`, `Method`, `Query` or `Content-Length` would
        // become the same variable as the request's own and override it.
        let reserved =
            ["method", "path", "query", "content-length", HTTPOXY_HEADER].contains(&name.as_str());
        if reserved
            || is_body_framing(name.as_str())
            || !name
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || !seen.insert(name.as_str())
        {
            continue;
        }
        let canonical: Vec<String> = name
            .as_str()
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        env.push((
            OsString::from(format!("Http_{}", canonical.join("_"))),
            OsString::from_vec(value.as_bytes().to_vec()),
        ));
    }
    env
}

/// `HTTP_*` variables for the request headers that may become one.
pub fn http_variables(headers: &HeaderMap) -> Vec<(OsString, OsString)> {
    let mut joined: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == "content-type"
            || name == "content-length"
            || name == HTTPOXY_HEADER
            || is_body_framing(name)
        {
            continue;
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        let separator: &[u8] = if name == "cookie" { b"; " } else { b", " };
        let entry = joined
            .entry(format!("HTTP_{}", env_name(name)))
            .or_default();
        if !entry.is_empty() {
            entry.extend_from_slice(separator);
        }
        entry.extend_from_slice(value.as_bytes());
    }
    joined
        .into_iter()
        .map(|(name, value)| (OsString::from(name), OsString::from_vec(value)))
        .collect()
}

/// `Transfer-Encoding`: how the body came over the wire, not how the function
/// gets it. A chunked body reaches stdin de-chunked, with its `CONTENT_LENGTH`;
/// a function also told `chunked` would look for chunks that are not there
/// (werkzeug, for one, then ignores the length and reads nothing).
fn is_body_framing(name: &str) -> bool {
    name == "transfer-encoding"
}

/// `x-forwarded-for` → `X_FORWARDED_FOR`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// The Host header without its port, or the address the request arrived on.
fn server_name(headers: &HeaderMap, local: std::net::SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
    match host {
        Some(host) if host.starts_with('[') => {
            host.split_inclusive(']').next().unwrap_or(host).to_owned()
        }
        Some(host) => host.split(':').next().unwrap_or(host).to_owned(),
        None => local.ip().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn header_variables() {
        let mut headers = HeaderMap::new();
        headers.insert("proxy", HeaderValue::from_static("http://evil"));
        headers.insert("x_forwarded_for", HeaderValue::from_static("spoof"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        let vars: BTreeMap<String, String> = http_variables(&headers)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        let want: BTreeMap<String, String> = [
            ("HTTP_ACCEPT", "a, b"),
            ("HTTP_AUTHORIZATION", "Bearer t"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(vars, want);
    }

    #[test]
    fn server_names() {
        let local: std::net::SocketAddr = "127.0.0.1:80".parse().unwrap();
        let with = |host: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            server_name(&h, local)
        };
        assert_eq!(with("example.com:8080"), "example.com");
        assert_eq!(with("[::1]:3000"), "[::1]");
        assert_eq!(server_name(&HeaderMap::new(), local), "127.0.0.1");
    }
}
