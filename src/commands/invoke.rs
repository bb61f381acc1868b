//! `watchdog invoke DIR PATH`: one request through the same path a server takes
//! (routing, limits, invoker), without a socket. Prints the response; exits 1 on 5xx.

use std::io::{Read, Write};
use std::net::SocketAddr;

use anyhow::{Context, anyhow};
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use futures_util::StreamExt;

use super::{CommandError, runtime, usage};
use crate::cli::InvokeArgs;
use crate::config::Settings;
use crate::routes::RouteTable;
use crate::server::listener::Connection;
use crate::server::{App, handler};

pub async fn run(settings: Settings, args: InvokeArgs) -> Result<(), CommandError> {
    let routes = RouteTable::for_settings(&settings)
        .with_context(|| format!("reading {}", settings.dir.display()))
        .map_err(usage)?;
    if let Err(err) = crate::process::reaper::become_subreaper() {
        tracing::debug!(error = %err, "not a subreaper");
    }
    let request = build_request(&args).map_err(usage)?;
    // What a server would send: no body for HEAD. The handler drops a HEAD
    // answer's body itself, but not that of the GET a local redirect turns
    // it into (the connection drops that one).
    let head_only = request.method() == Method::HEAD;
    let stand_in: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let app = App::new(std::sync::Arc::new(settings), routes, stand_in);
    let response = handler::handle(&app, Connection::internal(), request).await;
    let status = response.status();
    let mut stdout = std::io::stdout().lock();
    if !args.body_only {
        let mut head = format!(
            "HTTP/1.1 {} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        for (name, value) in response.headers() {
            head.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        head.push('\n');
        stdout.write_all(head.as_bytes()).map_err(runtime)?;
    }
    let mut body = response.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| runtime(anyhow!("the response body broke off: {err}")))?;
        if head_only {
            continue;
        }
        stdout.write_all(&chunk).map_err(runtime)?;
        stdout.flush().map_err(runtime)?;
    }
    // Let the function's driver finish reaping before the process exits.
    app.tasks.close();
    app.tasks.wait().await;
    if status.is_server_error() {
        return Err(runtime(anyhow!("the function answered {status}")));
    }
    Ok(())
}

fn build_request(args: &InvokeArgs) -> anyhow::Result<Request<Body>> {
    // curl's rules, which the flags copy: a body makes it a POST.
    let method = match &args.method {
        Some(method) => Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("--method {method}: not an HTTP method"))?,
        None if args.data.is_some() => Method::POST,
        None => Method::GET,
    };
    let path = if args.path().starts_with('/') {
        args.path().to_owned()
    } else {
        format!("/{}", args.path())
    };
    let mut builder = Request::builder().method(method).uri(&path);
    let (mut has_host, mut has_type) = (false, false);
    for line in &args.headers {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("--header `{line}`: expected `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("--header `{line}`: invalid header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("--header `{line}`: invalid header value"))?;
        has_host |= name == header::HOST;
        has_type |= name == header::CONTENT_TYPE;
        builder = builder.header(name, value);
    }
    if !has_host {
        builder = builder.header(header::HOST, "localhost");
    }
    let body = match args.data.as_deref() {
        None => Vec::new(),
        Some("@-") => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .context("reading the body from stdin")?;
            data
        }
        Some(data) => match data.strip_prefix('@') {
            Some(file) => std::fs::read(file)
                .with_context(|| format!("--data @{file}: cannot read the file"))?,
            None => data.as_bytes().to_vec(),
        },
    };
    if args.data.is_some() {
        builder = builder.header(header::CONTENT_LENGTH, body.len());
        if !has_type {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
    }
    builder
        .body(Body::from(body))
        .context("building the request")
}
