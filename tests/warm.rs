//! The keep-warm pool over HTTP-on-$PORT (issue 5, CONTRACT §4).

mod common;

use std::collections::BTreeMap;

use std::os::unix::fs::PermissionsExt;

use std::time::{Duration, Instant};

use common::{TestServer, client, fixtures, gone};

/// A project with the counter worker as `api/NAME.py` and `settings` as its
/// `warm` table.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let worker = std::fs::read(fixtures("warm").join("counter.py")).unwrap();
    let mut toml = String::new();
    for (name, warm) in files {
        let path = project.path().join("api").join(format!("{name}.py"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &worker).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        toml.push_str(&format!(
            "[functions.\"{name}.py\"]\nwarm = {{ protocol = \"http\", {warm} }}\n\n"
        ));
    }
    std::fs::write(project.path().join("watchdog.toml"), toml).unwrap();
    project
}

async fn call(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let response = client().get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn api(project: &tempfile::TempDir) -> std::path::PathBuf {
    project.path().join("api")
}

/// A project with one worker, `api/NAME` holding `script` (executable), warm
/// over HTTP with `section` as the rest of its watchdog.toml section.
fn one_worker(name: &str, script: &str, section: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let path = project.path().join("api").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        project.path().join("watchdog.toml"),
        format!("[functions.\"{name}\"]\n{section}\n"),
    )
    .unwrap();
    project
}

fn single_threaded_worker() -> String {
    std::fs::read_to_string(fixtures("warm").join("one-at-a-time.py")).unwrap()
}

/// A pool replaced while one of its `min` workers was starting (a file saved
/// twice in quick succession, as format-on-save does) stops: it started a
/// worker, recycled it as soon as it was ready, and started another, about
/// once a second for good (newcomer probe: 154 workers in 40 s, only a
/// restart stopped it).
#[tokio::test]
async fn a_pool_replaced_during_a_start_does_not_start_again() {
    let counter = fixtures("warm").join("counter.py");
    let script = |version: u32| {
        format!(
            "#!/bin/sh\n# version {version}\nsleep 1\nexec python3 {}\n",
            counter.display()
        )
    };
    let project = one_worker(
        "slow.sh",
        &script(1),
        "warm = { protocol = \"http\", min = 1 }",
    );
    let file = api(&project).join("slow.sh");
    let server = TestServer::start(&api(&project), &[]);
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(10)));
    // The first save's pool is starting its worker (a second) when the
    // second save replaces it.
    std::fs::write(&file, script(2)).unwrap();
    assert!(server.wait_for_log_count("warm pool created", 2, Duration::from_secs(10)));
    std::fs::write(&file, script(3)).unwrap();
    assert!(server.wait_for_log_count("warm pool created", 3, Duration::from_secs(10)));
    // The newest pool's worker, and time for several more starts.
    assert!(server.wait_for_log_count("warm worker ready", 3, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = server.log();
    assert!(log.matches("recycling a worker").count() <= 2, "{log}");
    let (status, _) = call(&server, "/api/slow").await;
    assert_eq!(status, 200);
}

/// Behind a balancer named by `--trusted-proxy`, functions see the client the
/// balancer names, not the balancer: a CGI function's REMOTE_ADDR (without
/// the balancer's port as REMOTE_PORT), HTTPS and REQUEST_SCHEME behind TLS,
/// a warm worker's X-Real-IP, and the invocation line's `client` (the
/// balancer as `via`). From anyone else the headers are not believed.
#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_others_do_not() {
    let project = project(&[("counter", "max = 1")]);
    std::fs::copy(fixtures("cgi").join("env.sh"), api(&project).join("env.sh")).unwrap();
    // The workaround before --trusted-proxy: never for a request that is not.
    std::fs::write(project.path().join(".env"), "HTTPS=on\nREMOTE_PORT=1\n").unwrap();
    /// The environment `env.sh` printed for `request`.
    async fn env_of(request: reqwest::RequestBuilder) -> BTreeMap<String, String> {
        common::env_map(&request.send().await.unwrap().text().await.unwrap())
    }
    let behind = |request: reqwest::RequestBuilder| {
        request
            .header("X-Forwarded-For", "6.6.6.6, 203.0.113.7")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Port", "443")
    };
    let trusting = TestServer::start(&api(&project), &["--trusted-proxy", "127.0.0.0/8"]);
    let env =
        env_of(behind(client().get(trusting.url("/api/env"))).header("X-Request-Id", "behind-1"))
            .await;
    assert_eq!(env["REMOTE_ADDR"], "203.0.113.7");
    assert!(!env.contains_key("REMOTE_PORT"), "{env:?}");
    assert_eq!(env["HTTPS"], "on");
    assert_eq!(env["REQUEST_SCHEME"], "https");
    assert_eq!(env["SERVER_PORT"], "443");
    let line = trusting.log_line("invocation request_id=behind-1 ", Duration::from_secs(5));
    assert!(line.contains("client=203.0.113.7 via=127.0.0.1:"), "{line}");
    let warm = common::send_json(behind(client().get(trusting.url("/api/counter")))).await;
    assert_eq!(warm["real_ip"], serde_json::json!(["203.0.113.7"]));
    // The chain goes on with the hop the balancer came from.
    assert_eq!(
        warm["forwarded_for"],
        serde_json::json!(["6.6.6.6, 203.0.113.7, 127.0.0.1"])
    );
    drop(trusting);
    // Not trusted (the default): the headers are a client's claim.
    let plain = TestServer::start(&api(&project), &[]);
    let env = env_of(behind(client().get(plain.url("/api/env")))).await;
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_ne!(
        env.get("REMOTE_PORT").map(String::as_str),
        Some("1"),
        "{env:?}"
    );
    assert!(env.contains_key("REMOTE_PORT"), "{env:?}");
    assert!(!env.contains_key("HTTPS"), "{env:?}");
    assert_eq!(env["REQUEST_SCHEME"], "http");
    assert_eq!(env["SERVER_PORT"], plain.addr.port().to_string());
    let warm = common::send_json(behind(client().get(plain.url("/api/counter")))).await;
    assert_eq!(warm["real_ip"], serde_json::json!(["127.0.0.1"]));
}

#[tokio::test]
async fn a_worker_keeps_its_state_between_requests_and_streams_bodies() {
    let project = project(&[("counter", "max = 2")]);
    let server = TestServer::start(&api(&project), &[]);
    let (_, first) = call(&server, "/api/counter").await;
    let (_, second) = call(&server, "/api/counter?x=1").await;
    let (_, third) = call(&server, "/api/counter").await;
    assert_eq!(first["pid"], second["pid"]);
    assert_eq!(second["pid"], third["pid"]);
    assert_eq!(
        [&first["served"], &second["served"], &third["served"]],
        [1, 2, 3]
    );
    assert_eq!(second["path"], "/api/counter?x=1");
    // A reason phrase of the worker's own passes, as the CGI envelope's does.
    let head = common::raw_request(
        server.addr,
        b"GET /api/counter?reason HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 Served Warm\r\n"), "{head}");
    // A route without parameters sends no parameters header.
    assert_eq!(first["params_header"], serde_json::Value::Null);
    // A header name with `_` could pose as watchdog's own (`X_Request_Id` is
    // HTTP_X_REQUEST_ID to WSGI): dropped.
    let underscored = common::send_json(
        client()
            .get(server.url("/api/counter"))
            .header("X_Request_Id", "spoofed"),
    )
    .await;
    assert_eq!(underscored["underscored"], serde_json::Value::Null);
    assert!(underscored["request_id"].is_string());
    // A `Proxy` header is httpoxy's way in (a framework turning it into
    // HTTP_PROXY), and one the client's `Connection` names is for the hop to
    // watchdog only (RFC 9110 section 7.6.1): neither reaches the worker.
    let hop_only = common::send_json(
        client()
            .get(server.url("/api/counter"))
            .header("Proxy", "http://attacker.example:8080")
            .header("Connection", "keep-alive, X-Hop-Only, Host")
            .header("X-Hop-Only", "for watchdog"),
    )
    .await;
    assert_eq!(hop_only["proxy"], serde_json::Value::Null);
    assert_eq!(hop_only["connection_named"], serde_json::Value::Null);
    // Host is kept whatever `Connection` says: the worker would be told
    // 127.0.0.1 instead.
    assert_eq!(hop_only["host"], server.addr.to_string());
    // The client's address joins a forwarded chain in the same field, so a
    // framework that reads one field does not see only the client's claim.
    let forwarded = common::send_json(
        client()
            .get(server.url("/api/counter"))
            .header("X-Forwarded-For", "1.2.3.4"),
    )
    .await;
    assert_eq!(
        forwarded["forwarded_for"],
        serde_json::json!(["1.2.3.4, 127.0.0.1"])
    );
    assert_eq!(forwarded["forwarded_proto"], "http");
    // The host the client asked for and its address, as `vercel dev` and nginx
    // pass them on. A proxy in front may have set the host already, and its
    // value stays; the address is always the one watchdog saw, so a client
    // cannot choose it.
    assert_eq!(
        forwarded["forwarded_host"],
        serde_json::json!([server.addr.to_string()])
    );
    assert_eq!(forwarded["real_ip"], serde_json::json!(["127.0.0.1"]));
    let proxied = common::send_json(
        client()
            .get(server.url("/api/counter"))
            .header("X-Forwarded-Host", "public.example")
            .header("X-Real-IP", "203.0.113.9"),
    )
    .await;
    assert_eq!(
        proxied["forwarded_host"],
        serde_json::json!(["public.example"])
    );
    assert_eq!(proxied["real_ip"], serde_json::json!(["127.0.0.1"]));
    // An HTTP/1.0 worker's answer goes out as HTTP/1.1 (the version is the hop's).
    let old = common::raw_request(
        server.addr,
        b"GET /api/counter?http10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(old.starts_with("HTTP/1.1 200 OK\r\n"), "{old}");
    assert!(
        old.ends_with("old") || old.ends_with("3\r\nold\r\n0\r\n\r\n"),
        "{old}"
    );
    let echo = client()
        .post(server.url("/api/counter"))
        .body("ping")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = echo.json().await.unwrap();
    assert_eq!(echo["echo"], "ping");
    // The log event follows the response: wait for it.
    for start in ["start=\"cold\"", "start=\"warm\""] {
        assert!(
            server.wait_for_log(start, Duration::from_secs(5)),
            "{}",
            server.log()
        );
    }
}

/// Calls `path` `requests` times, each over a new client connection, so the
/// requests come in on every one of watchdog's connection threads; returns the
/// answers.
async fn over_fresh_connections(
    server: &TestServer,
    path: &str,
    requests: usize,
) -> Vec<serde_json::Value> {
    let one_shot = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..requests {
        let response = one_shot.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        answers.push(response.json().await.unwrap());
    }
    answers
}

/// The client ports the worker saw the answers' requests come from.
fn ports(answers: &[serde_json::Value]) -> std::collections::HashSet<u64> {
    answers
        .iter()
        .map(|answer| answer["peer_port"].as_u64().unwrap())
        .collect()
}

fn connection_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[tokio::test]
async fn a_worker_is_reached_over_kept_alive_connections() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let threads = connection_threads();
    let answers = over_fresh_connections(&server, "/api/counter", 2 * threads + 2).await;
    // At most one connection per connection thread (one per core), not one per request.
    assert!(
        ports(&answers).len() <= threads,
        "{} requests reached the worker on {} connections",
        answers.len(),
        ports(&answers).len()
    );
}

#[tokio::test]
async fn a_worker_that_serves_one_connection_at_a_time_is_not_left_waiting() {
    let project = one_worker(
        "single.py",
        &single_threaded_worker(),
        r#"warm = { protocol = "http", max = 1 }"#,
    );
    // A request stuck behind another thread's idle connection would time out (504).
    let server = TestServer::start(&api(&project), &["--timeout", "3s"]);
    let threads = connection_threads();
    let answers = over_fresh_connections(&server, "/api/single", 4 * threads + 2).await;
    let pids: std::collections::HashSet<_> = answers.iter().map(|a| a["pid"].clone()).collect();
    assert_eq!(pids.len(), 1, "the worker was replaced: {answers:?}");
    // One connection from the moment the worker showed it serves one at a time:
    // the first thread's, then the one that found it out.
    assert!(ports(&answers).len() <= 2, "{answers:?}");
}

#[tokio::test]
async fn a_workers_connection_headers_and_conflicting_length_do_not_reach_the_client() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let response = client()
        .get(server.url("/api/counter?framing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    for name in ["content-length", "keep-alive", "x-private"] {
        assert!(headers.get(name).is_none(), "{name}: {headers:?}");
    }
    assert_eq!(response.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_has_its_worker_stopped_not_lent_again() {
    let project = one_worker(
        "single.py",
        &single_threaded_worker(),
        r#"warm = { protocol = "http", max = 1 }"#,
    );
    let server = TestServer::start(&api(&project), &["--timeout", "3s"]);
    let (_, warm) = call(&server, "/api/single").await;
    // The client gives up while the single-threaded worker sleeps on its request.
    let left = client()
        .get(server.url("/api/single?sleep=10"))
        .header("X-Request-Id", "left-early")
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(left.is_err());
    // The next request is not handed to that worker, still deaf for seconds (it
    // was, and timed out with a 504): the worker is stopped and a new one serves.
    let started = Instant::now();
    let (status, next) = call(&server, "/api/single").await;
    assert_eq!(status, 200, "{next}");
    assert_ne!(next["pid"], warm["pid"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(wait_until_gone(warm["pid"].as_i64().unwrap() as i32));
    let line = server.log_line("invocation request_id=left-early ", Duration::from_secs(5));
    assert!(line.contains("client_gone=true"), "{line}");
}

fn wait_until_gone(pid: i32) -> bool {
    common::wait_until(Duration::from_secs(5), || gone(pid))
}

#[tokio::test]
async fn a_workers_declared_trailer_fields_reach_a_client_that_takes_them() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let request = |te: &str| {
        common::raw_request(
            server.addr,
            format!(
                "GET /api/counter?trailers HTTP/1.1\r\nHost: t\r\n{te}Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .to_ascii_lowercase()
    };
    let taken = request("TE: trailers\r\n");
    assert!(taken.starts_with("http/1.1 200"), "{taken}");
    assert!(taken.contains("trailer: x-checksum\r\n"), "{taken}");
    let (_, tail) = taken.split_once("\r\n0\r\n").expect("a last chunk");
    assert!(tail.contains("x-checksum: 5d41402a\r\n"), "{taken}");
    // A field the worker never declared is not passed on (hyper sends only
    // declared ones), nor are trailers to a client that did not ask for them.
    assert!(!tail.contains("x-undeclared"), "{taken}");
    let plain = request("");
    assert!(plain.contains("\r\n5\r\nhello\r\n0\r\n"), "{plain}");
    assert!(!plain.contains("x-checksum: 5d41402a"), "{plain}");
}

#[tokio::test]
async fn an_answer_too_large_to_read_or_with_an_odd_status_is_a_502_and_not_a_crash() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let (_, before) = call(&server, "/api/counter").await;
    // More times than the crash loop allows.
    for _ in 0..6 {
        let (status, answer) = call(&server, "/api/counter?headers=120").await;
        assert_eq!(status, 502, "{answer}");
        assert!(answer.to_string().contains("not valid HTTP"), "{answer}");
    }
    // A status a CGI function could not send either: the same 502.
    for code in [600, 101] {
        let (status, answer) = call(&server, &format!("/api/counter?status={code}")).await;
        assert_eq!(status, 502, "{answer}");
        let text = answer.to_string();
        assert!(
            text.contains(&format!("status {code}, not one from 200 to 599")),
            "{answer}"
        );
    }
    let (status, after) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    assert_eq!(before["pid"], after["pid"], "the worker was kept");
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_whose_time_runs_out_is_a_504_not_a_crash() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &["--timeout", "2s"]);
    for round in 0..3 {
        // The first request times out and its worker is replaced; the second
        // waited behind it, with too little time left for a worker to start.
        let stuck = tokio::spawn({
            let url = server.url("/api/counter?sleep=10");
            async move { client().get(url).send().await.unwrap().status().as_u16() }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (queued, answer) = call(&server, "/api/counter").await;
        assert_eq!(stuck.await.unwrap(), 504, "round {round}");
        assert_eq!(queued, 504, "round {round}: {answer}");
    }
    assert_eq!(call(&server, "/api/counter").await.0, 200);
    let log = server.log();
    assert!(!log.contains("crashed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_a_busy_worker_is_logged_as_queue_wait() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    assert_eq!(call(&server, "/api/counter").await.0, 200);
    let busy = tokio::spawn({
        let url = server.url("/api/counter?sleep=1");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waited = client()
        .get(server.url("/api/counter"))
        .header("X-Request-Id", "waited-1")
        .send()
        .await
        .unwrap();
    assert_eq!(waited.status(), 200);
    assert_eq!(busy.await.unwrap(), 200);
    let line = server.log_line("invocation request_id=waited-1 ", Duration::from_secs(5));
    let queue_wait_ms: f64 = line
        .split_once("queue_wait_ms=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no queue_wait_ms: {line}"));
    // It waited for the only worker, which slept for a second.
    assert!(queue_wait_ms >= 500.0, "{line}");
}

/// A worker that listens on a port of its own rather than $PORT (an OpenFaaS
/// template's fixed upstream port, a server that ignores PORT) is named in the
/// log with the port it used, a second after it starts, and its start fails
/// with that finding once it has had 10 s: the request waiting on it got a
/// 504 "still starting" once its whole timeout (30 s by default) had passed.
#[tokio::test]
async fn a_worker_listening_on_another_port_than_port_fails_its_start_naming_it() {
    let project = one_worker(
        "fixed.py",
        "#!/usr/bin/env python3\n\
         from http.server import HTTPServer, BaseHTTPRequestHandler\n\
         HTTPServer(('127.0.0.1', 0), BaseHTTPRequestHandler).serve_forever()\n",
        "warm = { protocol = \"http\", max = 1 }",
    );
    let server = TestServer::start(&api(&project), &[]);
    let response = client().get(server.url("/api/fixed")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("did not start: it listens on port"), "{text}");
    assert!(text.contains("but not on the one in $PORT"), "{text}");
    let line = server.log_line("but not on the one in $PORT", Duration::from_secs(5));
    assert!(line.contains("listens on port"), "{line}");
}

/// A worker bound to every interface (`0.0.0.0`, as many templates bind) is
/// served, and the log says once, not at each worker's start, that other
/// machines reach it past watchdog.
#[tokio::test]
async fn a_worker_listening_on_every_interface_is_served_and_named_once() {
    let project = one_worker(
        "open.py",
        "#!/usr/bin/env python3\n\
         import os\n\
         from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler\n\
         class H(BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'up')\n\
         ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n",
        "warm = { protocol = \"http\", min = 2, max = 2 }",
    );
    let server = TestServer::start(&api(&project), &[]);
    assert!(server.wait_for_log_count("warm worker ready", 2, Duration::from_secs(20)));
    let response = client().get(server.url("/api/open")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "up");
    let log = server.log();
    assert_eq!(
        log.matches("a warm worker listens on every interface")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("file=open.py"), "{log}");
}

/// A server that opens another listener first (a metrics port) and binds
/// $PORT seconds later, after a slow boot, is waited for: the port it holds
/// meanwhile is no reason to give up on it.
#[tokio::test]
async fn a_worker_that_listens_elsewhere_before_binding_port_is_waited_for() {
    let project = one_worker(
        "slow.py",
        "#!/usr/bin/env python3\n\
         import os, socket, time\n\
         from http.server import HTTPServer, BaseHTTPRequestHandler\n\
         metrics = socket.socket(); metrics.bind(('127.0.0.1', 0)); metrics.listen()\n\
         time.sleep(3)\n\
         class H(BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'up')\n\
         HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n",
        "warm = { protocol = \"http\", max = 1 }",
    );
    let server = TestServer::start(&api(&project), &[]);
    let response = client().get(server.url("/api/slow")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "up");
    // It was seen listening elsewhere, and named, on the way.
    assert!(
        server
            .log()
            .contains("a starting warm worker does not listen where watchdog waits for it"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn a_crashed_worker_is_replaced() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let (_, before) = call(&server, "/api/counter").await;
    let (status, crashed) = call(&server, "/api/counter?crash").await;
    assert_eq!(status, 502);
    // Said as the worker's end, with its exit, not as a broken connection.
    let text = crashed.as_str().unwrap_or_default();
    assert!(
        text.contains("its warm worker failed: its process ended"),
        "{text}"
    );
    let (status, after) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    assert_ne!(before["pid"], after["pid"]);
    assert_eq!(after["served"], 1, "a fresh worker");
    assert!(gone(before["pid"].as_i64().unwrap() as i32));
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains("watchdog_worker_crashes_total{route=\"/api/counter\"} 1\n"),
        "{metrics}"
    );
}

/// A chunked upload reaches an HTTP worker with its length, as CGI gets
/// it: received whole first, it went on chunked when it was too large to keep
/// in memory, and Python's http.server (which reads by Content-Length) took it
/// for an empty body.
#[tokio::test]
async fn a_chunked_upload_reaches_a_worker_with_its_length() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    for size in [1000usize, 600 * 1024] {
        let mut request = format!(
            "POST /api/counter HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\n\r\n{size:x}\r\n"
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(b'a', size));
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        let answer = common::raw_request(server.addr, &request);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{}",
            &answer[..answer.len().min(300)]
        );
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let echoed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(echoed["echo"].as_str().unwrap().len(), size, "{size}");
    }
}

/// A request waiting for a busy pool's worker holds no server-wide slot:
/// `--max-concurrency` counts invocations running. Here the first request
/// runs (its slot), the second waits for the one worker, and a CGI request
/// runs beside them; it used to wait behind both and get the queue's 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_a_warm_worker_holds_no_server_slot() {
    let project = project(&[("counter", "max = 1")]);
    common::write_script(
        &api(&project).join("hello.sh"),
        "printf 'Content-Type: text/plain\\n\\nhello\\n'",
    );
    let server = TestServer::start(
        &api(&project),
        &["--max-concurrency", "2", "--queue-timeout", "2s"],
    );
    let running = tokio::spawn(client().get(server.url("/api/counter?sleep=5")).send());
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(10)));
    let waiting = tokio::spawn(client().get(server.url("/api/counter?sleep=5")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hello = client().get(server.url("/api/hello")).send().await.unwrap();
    let status = hello.status();
    let text = hello.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "hello\n");
    // Answered beside both, not once the waiting one gave up its slot (its
    // wait for the worker ends at the 2 s queue timeout).
    assert!(!running.is_finished());
    assert!(!waiting.is_finished());
    running.abort();
    waiting.abort();
}

/// A request that meets a retiring worker goes back to the pool's queue
/// without its server-wide slot, as the first time: held, with
/// `--max-concurrency 1` it kept the request that took the pool's one place
/// from running, while it waited for that place; the other got a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_to_another_worker_gives_its_slot_back_while_it_waits() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(
        &api(&project),
        &["--max-concurrency", "1", "--queue-timeout", "3s"],
    );
    // One client: the next request follows the last on watchdog's kept
    // connection to the worker, which leaves it unread for 1 s and exits 0.
    let kept = client();
    let last = kept
        .get(server.url("/api/counter?retire-slowly"))
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 200);
    let _ = last.bytes().await;
    let meets_the_retiring = tokio::spawn(kept.get(server.url("/api/counter")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued_behind = tokio::spawn(client().get(server.url("/api/counter")).send());
    for (what, request) in [("retried", meets_the_retiring), ("queued", queued_behind)] {
        let answer = request.await.unwrap().unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 200, "{what}: {text}");
    }
}

/// A worker that exits 0 after its answer retired itself (`uvicorn
/// --limit-max-requests`, a leak guard): not a crash, so the function never
/// reaches the crash-loop 503 however often it happens.
#[tokio::test]
async fn a_worker_that_exits_cleanly_after_answering_is_not_a_crash() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let mut pids = std::collections::HashSet::new();
    for round in 0..7 {
        let (status, answer) = call(&server, "/api/counter?retire").await;
        assert_eq!(status, 200, "round {round}: {answer}");
        let pid = answer["pid"].as_i64().unwrap();
        assert!(pids.insert(pid), "round {round}: pid {pid} served twice");
        // Reaped by the pool on its own, before another request comes.
        assert!(
            common::wait_until(Duration::from_secs(5), || gone(pid as i32)),
            "round {round}: pid {pid} was not reaped"
        );
    }
    let (status, _) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    let log = server.log();
    assert!(!log.contains("worker crashed"), "{log}");
    assert!(log.contains("exited on its own (exit 0)"), "{log}");
}

/// A request that reaches a worker as it retires (it has answered its last
/// request and is on its way out, the next one unread or refused) goes to
/// another worker: before, the client got a 502 and the function a crash.
/// `retire-slowly` leaves the next request unread on the kept connection
/// until it exits 0; `retire-closing` stops listening first.
#[tokio::test]
async fn a_request_that_meets_a_retiring_worker_goes_to_another() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    // One client: the second request follows the first on its connection,
    // and so on watchdog's kept connection to the worker.
    let client = client();
    for mode in ["retire-slowly", "retire-closing"] {
        for method in ["GET", "POST"] {
            let last = client
                .get(server.url(&format!("/api/counter?{mode}")))
                .send()
                .await
                .unwrap();
            assert_eq!(last.status(), 200, "{mode}");
            let last: serde_json::Value = last.json().await.unwrap();
            let next = match method {
                "GET" => client.get(server.url("/api/counter")),
                _ => client.post(server.url("/api/counter")).body("hello"),
            };
            let next = next.send().await.unwrap();
            let status = next.status().as_u16();
            let text = next.text().await.unwrap();
            if mode == "retire-slowly" && method == "POST" {
                // Sent, and lost unread: a POST is not sent twice.
                assert_eq!(status, 502, "{mode} {method}: {text}");
                assert!(text.contains("retired itself (exit 0"), "{text}");
                assert!(text.contains("may retry this POST"), "{text}");
                continue;
            }
            assert_eq!(status, 200, "{mode} {method}: {text}\n{}", server.log());
            let next: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_ne!(next["pid"], last["pid"], "{mode} {method}");
            if method == "POST" {
                assert_eq!(next["echo"], "hello", "{mode}: the body, whole");
            }
        }
    }
    // Each of the four leaving workers is judged as such, none as crashed:
    // the retire-slowly ones exit 0 on their own; the retire-closing ones
    // refused, were still shutting down after a moment, and were stopped.
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            let log = server.log();
            log.matches("exited on its own (exit 0)").count()
                + log
                    .matches("stopped accepting connections after serving")
                    .count()
                == 4
        }),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(!log.contains("worker crashed"), "{log}");
}

/// A worker that stops listening as soon as it is ready, and runs on: the
/// request is sent to at most three of them, then fails with a 502 that says
/// why, instead of starting worker after worker until its deadline; each is
/// judged a crash once it has not exited within `--kill-grace`.
#[tokio::test]
async fn workers_that_never_take_a_request_fail_it_after_three() {
    let script = r#"#!/usr/bin/env python3
import os, socket, time
listener = socket.socket()
listener.bind(("127.0.0.1", int(os.environ["PORT"])))
listener.listen(8)
listener.accept()  # watchdog's readiness check
listener.shutdown(socket.SHUT_RDWR)
time.sleep(60)
"#;
    let project = one_worker(
        "refuser.py",
        script,
        "warm = { protocol = \"http\", max = 1 }",
    );
    // The script leaves a moment between its accept and its shutdown: a
    // request that lands in the listener's backlog then is reset unread, a
    // 502 that says the request broke off (sent, so not sent again to a
    // worker that never served). Seen once in a loaded full-suite run, and
    // made certain with a sleep there; a property of the script, so the
    // scenario is tried afresh when it happens.
    for attempt in 1..=3 {
        let server = TestServer::start(&api(&project), &["--kill-grace", "300ms"]);
        let (status, answer) = call(&server, "/api/refuser").await;
        assert_eq!(status, 502, "{answer}");
        let text = answer.as_str().unwrap_or_default();
        let broke_off =
            text.contains("broke off the request") || text.contains("its process ended");
        if attempt < 3 && broke_off {
            continue;
        }
        assert!(
            text.contains("the request reached no worker in 3 tries"),
            "{text}"
        );
        assert!(
            server.wait_for_log_count(
                "why=\"stopped accepting connections\"",
                3,
                Duration::from_secs(5)
            ),
            "{}",
            server.log()
        );
        return;
    }
}

/// Asks `path` (a `?cut` answer) `rounds` times: each answer is a 200 cut
/// off, from the worker `pid`.
async fn cut_short_by(server: &TestServer, path: &str, pid: &str, rounds: usize) {
    for round in 0..rounds {
        let (status, body, cut_off) = common::read_as_far_as_it_goes(server, path).await;
        assert_eq!((status, cut_off), (200, true), "round {round}: {body}");
        assert_eq!(body.split_whitespace().nth(1), Some(pid), "round {round}");
    }
}

#[tokio::test]
async fn a_worker_that_cuts_an_answer_short_is_kept_and_one_that_answers_nothing_replaced() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let (_, first) = call(&server, "/api/counter").await;
    let pid = first["pid"].to_string();
    // A handler that fails after the head went out: more than the crash limit
    // (5), each used to count as a crash and stop the worker.
    cut_short_by(&server, "/api/counter?cut", &pid, 6).await;
    let (_, after) = call(&server, "/api/counter").await;
    assert_eq!(after["pid"], first["pid"], "the worker was replaced");
    // Closing connections without an answer: kept after two in a row (an
    // answer in between starts the count over), replaced after three.
    for in_a_row in [2, 3] {
        for round in 0..in_a_row {
            let (status, text) = call(&server, "/api/counter?hangup").await;
            assert_eq!(status, 502, "round {round}: {text}");
        }
        if in_a_row == 2 {
            assert_eq!(call(&server, "/api/counter").await.1["pid"], first["pid"]);
        }
    }
    let (_, replaced) = call(&server, "/api/counter").await;
    assert_ne!(replaced["pid"], first["pid"]);
    // One that ends while idle is a crash too, found by the idle check (it was
    // stopped as if it had idled out, and the crash went uncounted).
    assert_eq!(call(&server, "/api/counter?exit-after").await.0, 200);
    assert!(
        server.wait_for_log("why=\"exited while idle\"", Duration::from_secs(3)),
        "{}",
        server.log()
    );
    // A worker that dies in the middle of an answer is a crash, replaced at once.
    let (_, body, cut_off) = common::read_as_far_as_it_goes(&server, "/api/counter?die-mid").await;
    assert!(cut_off, "{body}");
    let (status, next) = call(&server, "/api/counter").await;
    assert_eq!(
        status, 200,
        "the next request went to the dead worker: {next}"
    );
    assert_ne!(next["pid"], replaced["pid"]);
    assert!(gone(replaced["pid"].as_i64().unwrap() as i32));
    // The six cut answers and the one the dying worker left are logged as
    // cut off, not as whole 200s; whole answers say nothing of it.
    assert!(
        server.wait_for_log_count("cut_off=true", 7, Duration::from_secs(5)),
        "{}",
        server.log()
    );
}

/// A warm function whose file stays empty (`touch api/new.py`) cannot
/// start: after the moment a save is given, each start counts toward the
/// crash loop, which ends in its 503 rather than in starts tried forever.
#[tokio::test]
async fn a_warm_function_whose_file_stays_empty_ends_in_the_crash_loop() {
    let project = project(&[("empty", "max = 1")]);
    std::fs::write(api(&project).join("empty.py"), "").unwrap();
    let server = TestServer::start(&api(&project), &[]);
    let mut answers = Vec::new();
    for _ in 0..12 {
        let (status, body) = call(&server, "/api/empty").await;
        let text = body.to_string();
        answers.push((status, text.clone()));
        if status == 503 {
            break;
        }
        assert_eq!(status, 500, "{text}");
        assert!(text.contains("its file is empty"), "{text}");
    }
    let (status, text) = answers.last().unwrap();
    assert_eq!(*status, 503, "{answers:?}");
    assert!(
        text.contains("crashed") || text.contains("restart backoff"),
        "{text}"
    );
}

#[tokio::test]
async fn a_request_that_cannot_wait_out_the_restart_backoff_is_told_when_to_come_back() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &["--timeout", "1500ms"]);
    // Three crashes in a row: the next start waits 2 s (CONTRACT §4), longer
    // than a request may wait here. Each crash is counted as it happens.
    for round in 0..3 {
        let (status, text) = call(&server, "/api/counter?crash").await;
        assert_eq!(status, 502, "round {round}: {text}");
    }
    let response = client()
        .get(server.url("/api/counter"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let text = response.text().await.unwrap();
    assert!(text.contains("restart backoff"), "{text}");
    assert!(!text.contains("raise `max`"), "not a busy pool: {text}");
    // Once it is over, a worker starts again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(call(&server, "/api/counter").await.0, 200);
}

#[tokio::test]
async fn a_port_another_program_took_first_is_not_taken_for_the_worker() {
    // At its first start the worker says its $PORT and waits; this test, another
    // program, takes the port meanwhile, and the worker then fails to bind it.
    // At its next start it serves as the counter does.
    let project = tempfile::tempdir().unwrap();
    let said = project.path().join("port");
    let counter = fixtures("warm").join("counter.py");
    let script = format!(
        r#"#!/bin/sh
if [ ! -e "{said}" ]; then
  echo "$PORT" > "{said}.tmp" && mv "{said}.tmp" "{said}"
  sleep 1
fi
exec python3 {counter}
"#,
        said = said.display(),
        counter = counter.display()
    );
    let worker = one_worker(
        "late.sh",
        &script,
        "warm = { protocol = \"http\", max = 1 }",
    );
    std::fs::rename(worker.path().join("api"), project.path().join("api")).unwrap();
    std::fs::rename(
        worker.path().join("watchdog.toml"),
        project.path().join("watchdog.toml"),
    )
    .unwrap();
    let server = TestServer::start(&api(&project), &["--timeout", "5s"]);
    let request = tokio::spawn({
        let url = server.url("/api/late");
        async move {
            let response = client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(&said) {
            break text.trim().parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    // Taken for the worker, this listener (which never answers) held the
    // request until its timeout (504).
    let (status, answer) = request.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"pid\""), "{answer}");
    assert!(server.wait_for_log(
        "another program took the worker's port",
        Duration::from_secs(1)
    ));
}

#[tokio::test]
async fn a_worker_whose_server_runs_in_a_session_of_its_own_is_ready() {
    // A wrapper that starts the real server detached (setsid), as some process
    // managers do: the listener is not in the worker's process group, but it is
    // the worker's.
    let counter = fixtures("warm").join("counter.py");
    let script = format!("#!/bin/sh\nsetsid python3 {} &\nwait\n", counter.display());
    let project = one_worker(
        "detached.sh",
        &script,
        "warm = { protocol = \"http\", max = 1 }",
    );
    let server = TestServer::start(&api(&project), &[]);
    let (status, answer) = call(&server, "/api/detached").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["pid"].is_number(), "{answer}");
}

/// A worker that exits 0 without ever serving has not retired: it is a crash
/// (else one that exits as soon as it is ready would be restarted forever,
/// with no backoff), and the log says how it ended.
#[tokio::test]
async fn a_worker_that_exits_cleanly_before_serving_is_a_crash() {
    let project = one_worker(
        "brief.py",
        "#!/usr/bin/env python3\n\
         import os, socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', int(os.environ['PORT'])))\n\
         s.listen()\n\
         time.sleep(0.3)\n",
        "warm = { protocol = \"http\", min = 1, max = 1 }",
    );
    let server = TestServer::start(&api(&project), &[]);
    let line = server.log_line("worker crashed", Duration::from_secs(20));
    assert!(line.contains("exit 0"), "{line}");
    assert!(!server.log().contains("exited on its own"));
}

/// `api/wrapper.sh`, warm with `max = 1`: a wrapper that starts the counter
/// worker in the background and exits 0 at once (`start.sh`: `uvicorn
/// --port $PORT &`).
fn wrapper_project() -> tempfile::TempDir {
    let counter = fixtures("warm").join("counter.py");
    let script = format!("#!/bin/sh\npython3 {} &\nexit 0\n", counter.display());
    one_worker(
        "wrapper.sh",
        &script,
        "warm = { protocol = \"http\", max = 1 }",
    )
}

/// A wrapper that starts the server in the background and exits 0 at once
/// (`start.sh`: `uvicorn --port $PORT &`) has not retired: its server, which
/// holds its output, serves on, request after request.
#[tokio::test]
async fn a_wrapper_that_exits_while_its_server_runs_is_kept_warm() {
    let project = wrapper_project();
    let server = TestServer::start(&api(&project), &[]);
    let mut served = Vec::new();
    for _ in 0..4 {
        let (status, answer) = call(&server, "/api/wrapper").await;
        assert_eq!(status, 200, "{answer}");
        served.push((answer["pid"].as_i64(), answer["served"].as_i64()));
    }
    let pid = served[0].0;
    assert!(
        served.iter().all(|(p, _)| *p == pid),
        "the server was replaced: {served:?}"
    );
    assert_eq!(served[3].1, Some(4), "{served:?}");
    assert!(!server.log().contains("exited on its own"));
}

/// The pid of the wrapper project's server, once it has served and its
/// wrapper is past the tick that reaps it (every 100 ms) and its margin.
async fn wrapper_server_pid(server: &TestServer) -> serde_json::Value {
    let (status, answer) = call(server, "/api/wrapper").await;
    assert_eq!(status, 200, "{answer}");
    std::thread::sleep(Duration::from_millis(1000));
    answer["pid"].clone()
}

/// A wrapper's server that crashes on a request is a crash, not a retirement:
/// when its output closes, the status watchdog gets is the wrapper's exit 0
/// from long before. Judged by that, the crash went uncounted and the GET was
/// sent on to another worker, to crash it too.
#[tokio::test]
async fn a_wrapper_whose_server_crashes_has_not_retired() {
    let project = wrapper_project();
    let server = TestServer::start(&api(&project), &[]);
    wrapper_server_pid(&server).await;
    let (status, answer) = call(&server, "/api/wrapper?crash").await;
    assert_eq!(status, 502, "{answer}");
    assert!(
        common::wait_until(Duration::from_secs(5), || server
            .log()
            .contains("worker crashed")),
        "{}",
        server.log()
    );
    assert!(
        !server.log().contains("exited on its own"),
        "{}",
        server.log()
    );
}

/// A wrapper's server that cuts an answer short on purpose and serves on is
/// kept, as a plain server is. Its leader (the wrapper) was reaped long
/// before, and that was taken for the server's end: each cut answer counted
/// as a crash, and the server was stopped.
#[tokio::test]
async fn a_wrapper_whose_server_cuts_an_answer_short_is_kept() {
    let project = wrapper_project();
    let server = TestServer::start(&api(&project), &[]);
    let first = wrapper_server_pid(&server).await;
    cut_short_by(&server, "/api/wrapper?cut", &first.to_string(), 2).await;
    let (status, after) = call(&server, "/api/wrapper").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["pid"], first, "the server was replaced");
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
    // One that dies mid-answer is a crash all the same.
    let (_, body, cut_off) = common::read_as_far_as_it_goes(&server, "/api/wrapper?die-mid").await;
    assert!(cut_off, "{body}");
    // A crash either way: judged as the answer broke off, or (when its
    // connection closed a moment before the process was gone) found by the
    // idle check, as a plain server's is.
    assert!(
        server.wait_for_log("worker crashed", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let (status, next) = call(&server, "/api/wrapper").await;
    assert_eq!(status, 200, "{next}");
    assert_ne!(next["pid"], first);
}

#[tokio::test]
async fn uploads_a_client_breaks_off_or_stalls_are_not_blamed_on_the_worker() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &["--body-idle-timeout", "500ms"]);
    let (_, before) = call(&server, "/api/counter").await;
    // More broken-off uploads than the crash loop allows (5 within a minute),
    // half of them to a worker that answers before it reads the body.
    for n in 0..6 {
        let request_id = format!("cut-{n}");
        let path = if n % 2 == 0 {
            "/api/counter"
        } else {
            "/api/counter?early"
        };
        let stream = common::start_upload(server.addr, path, &request_id, 1000, 100);
        // Let the request reach the worker, then break the upload off.
        std::thread::sleep(Duration::from_millis(100));
        drop(stream);
        let line = format!("invocation request_id={request_id} ");
        assert!(
            server.wait_for_log(&line, Duration::from_secs(5)),
            "{}",
            server.log()
        );
    }
    let answer = common::read_answer(&mut common::start_upload(
        server.addr,
        "/api/counter",
        "stall-1",
        1000,
        100,
    ));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (status, after) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    assert_eq!(before["pid"], after["pid"], "the worker was kept");
    let log = server.log();
    assert!(!log.contains("worker crashed"), "{log}");
    let line = server.log_line("invocation request_id=cut-0 ", Duration::from_secs(1));
    assert!(line.contains("client_gone=true"), "{line}");
    assert!(line.contains("bytes_in=100 "), "{line}");
}

/// A client that leaves in the middle of a streamed answer leaves the worker
/// busy with it: it is stopped (CONTRACT §3's kill rule, per request under
/// §4), as when the client leaves before the head. It was lent again, and
/// served the next request beside the abandoned one. A client that read only
/// the status of an answer the worker had sent whole leaves it idle: kept.
#[tokio::test]
async fn a_client_that_leaves_mid_answer_is_logged_as_gone_and_the_busy_worker_stopped() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let (_, before) = call(&server, "/api/counter").await;
    let status_only = client()
        .get(server.url("/api/counter"))
        .send()
        .await
        .unwrap();
    assert_eq!(status_only.status(), 200);
    drop(status_only);
    let (_, kept) = call(&server, "/api/counter").await;
    assert_eq!(before["pid"], kept["pid"], "an idle worker is kept");
    drop(common::get_until(
        server.addr,
        "/api/counter?drip=50",
        "left-1",
        "tick",
    ));
    let line = server.log_line("invocation request_id=left-1 ", Duration::from_secs(5));
    assert!(line.contains("client_gone=true"), "{line}");
    assert!(
        server.wait_for_log("whose client left", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let (status, after) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    assert_ne!(before["pid"], after["pid"], "the busy worker was stopped");
    assert_eq!(after["served"], 1, "a fresh worker");
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
    // One kill: the busy worker's. The idle one was kept, and is not counted.
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains("watchdog_kills_total{route=\"/api/counter\",reason=\"client_gone\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upload_still_arriving_at_the_timeout_is_a_408_and_the_worker_is_kept() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &["--timeout", "1s"]);
    let (_, before) = call(&server, "/api/counter").await;
    let mut stream = common::start_upload(server.addr, "/api/counter", "late-1", 1000, 10);
    // Steady but slow: never idle for long, never done in time.
    common::trickle(&mut stream, 8, Duration::from_millis(250));
    let answer = common::read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (status, after) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    assert_eq!(before["pid"], after["pid"], "the worker was kept");
    assert!(
        !server.log().contains("killing a worker"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_and_replaces_only_the_stuck_worker() {
    let project = project(&[("counter", "max = 2")]);
    let server = TestServer::start(&api(&project), &["--timeout", "1s"]);
    // Two workers: one gets stuck, the other keeps serving.
    let stuck = tokio::spawn({
        let url = server.url("/api/counter?sleep=30");
        async move {
            let request = client().get(url).header("X-Request-Id", "stuck-1");
            request.send().await.unwrap().status().as_u16()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, healthy) = call(&server, "/api/counter").await;
    assert_eq!(stuck.await.unwrap(), 504);
    // The line says what the client got.
    let line = server.log_line("invocation request_id=stuck-1 ", Duration::from_secs(5));
    assert!(line.contains("status=504"), "{line}");
    let (_, again) = call(&server, "/api/counter").await;
    assert_eq!(
        healthy["pid"], again["pid"],
        "the healthy worker was left alone"
    );
    assert!(server.wait_for_log(
        "killing a worker whose request ran past its time",
        Duration::from_secs(3)
    ));
    // As a CGI function is (CONTRACT §3, §4): SIGTERM, and `--kill-grace`
    // before SIGKILL, so it could finish what it had in hand.
    let stuck_pid = server
        .log_line(
            "killing a worker whose request ran past its time",
            Duration::from_secs(1),
        )
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .unwrap();
    assert!(
        server.wait_for_log(
            &format!("worker {stuck_pid} stopped gracefully"),
            Duration::from_secs(3)
        ),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn min_workers_are_running_before_the_first_request_and_after_a_change() {
    let project = project(&[("kept", "min = 1, max = 2")]);
    let server = TestServer::start(&api(&project), &[]);
    assert!(
        server.wait_for_log("warm worker ready route=/api/kept", Duration::from_secs(10)),
        "no worker was started ahead of requests: {}",
        server.log()
    );
    let (status, _) = call(&server, "/api/kept").await;
    assert_eq!(status, 200);
    assert!(server.wait_for_log("start=\"warm\"", Duration::from_secs(2)));
    assert!(!server.log().contains("start=\"cold\""), "{}", server.log());
    // A new version of the file starts its own worker ahead of requests too.
    let file = api(&project).join("kept.py");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&file, text).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            server
                .log()
                .matches("warm worker ready route=/api/kept")
                .count()
                >= 2
        }),
        "{}",
        server.log()
    );
    // Once the file is gone, so are its workers.
    let (_, answer) = call(&server, "/api/kept").await;
    let pid = answer["pid"].as_i64().unwrap() as i32;
    std::fs::remove_file(&file).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || gone(pid)),
        "worker {pid} of a deleted file still runs"
    );
}

/// A worker that imports a module of its own kind below DIR (`_lib/db.py`)
/// had it loaded: an edit to it recycles the worker as an edit to the worker's
/// file does, and an edit to a file of another kind does not.
#[tokio::test]
async fn an_edit_to_a_module_of_the_workers_kind_recycles_it() {
    let project = project(&[("kept", "max = 1")]);
    let lib = api(&project).join("_lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::write(lib.join("helper.py"), "VALUE = 1\n").unwrap();
    let server = TestServer::start(&api(&project), &[]);
    let (status, first) = call(&server, "/api/kept").await;
    assert_eq!(status, 200);
    let pid = first["pid"].as_i64().unwrap();
    std::fs::write(lib.join("notes.txt"), "not code\n").unwrap();
    assert!(
        server.wait_for_log("routes reloaded", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let (_, same) = call(&server, "/api/kept").await;
    assert_eq!(same["pid"].as_i64(), Some(pid), "a text file recycled it");
    std::fs::write(lib.join("helper.py"), "VALUE = 2\n").unwrap();
    let started = Instant::now();
    loop {
        let (_, answer) = call(&server, "/api/kept").await;
        if answer["pid"].as_i64() != Some(pid) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the worker that loaded the old _lib/helper.py still serves"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A warm worker runs the code it started with: a request right after a
/// save (an editor's write to a temporary file, then a rename over the old)
/// waits for the walk that sees it and gets the new code, as a CGI program
/// would. It got the old worker's answer for up to the quiet period and the
/// walk (140-290 ms).
#[tokio::test]
async fn a_request_right_after_a_save_gets_the_new_code() {
    let version = |v: &str| {
        format!(
            r#"#!/usr/bin/env python3
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"{v}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#
        )
    };
    let project = one_worker(
        "edited.py",
        &version("one"),
        r#"warm = { protocol = "http" }"#,
    );
    let server = TestServer::start(&api(&project), &[]);
    assert_eq!(
        call(&server, "/api/edited").await,
        (200, serde_json::Value::String("one".into()))
    );
    let saved = api(&project).join(".edited.py.tmp");
    std::fs::write(&saved, version("two")).unwrap();
    std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&saved, api(&project).join("edited.py")).unwrap();
    // For the watcher to have seen it; within the quiet period (75 ms), so
    // that without the wait for the walk the old worker would answer. (On a
    // machine slow enough to sleep past it, the walk is done and the test
    // passes either way.)
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(
        call(&server, "/api/edited").await,
        (200, serde_json::Value::String("two".into()))
    );
}

/// A warm worker that writes a log below DIR as it serves: each write is a
/// change, but not one that can give it a new version, so the next request
/// does not wait for a walk (it did, every time).
#[tokio::test]
async fn a_worker_writing_its_log_below_dir_does_not_make_requests_wait() {
    let project = one_worker(
        "logger.py",
        r#"#!/usr/bin/env python3
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with open("hits.log", "a") as log:
            log.write("hit\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#,
        r#"warm = { protocol = "http", max = 1 }"#,
    );
    let server = TestServer::start(&api(&project), &[]);
    for _ in 0..5 {
        assert_eq!(
            call(&server, "/api/logger").await,
            (200, serde_json::Value::String("ok".into()))
        );
    }
    assert!(api(&project).join("hits.log").exists());
    assert!(
        !server.log().contains("walking DIR early"),
        "{}",
        server.log()
    );
}

/// A warm worker's file open for writing when its start comes (a save in
/// place) is started once the save ends, not counted as a crash.
#[tokio::test]
async fn a_worker_started_while_its_file_is_saved_starts_after_the_save() {
    let project = one_worker(
        "saved.py",
        &booting_worker(0.0),
        r#"warm = { protocol = "http" }"#,
    );
    let server = TestServer::start(&api(&project), &[]);
    let saving = std::fs::OpenOptions::new()
        .append(true)
        .open(api(&project).join("saved.py"))
        .unwrap();
    let request = tokio::spawn(client().get(server.url("/api/saved")).send());
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(saving);
    let answered = request.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200, "{}", server.log());
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_routed_before_a_change_is_served_by_the_new_version() {
    let project = project(&[("stale", "min = 1, max = 2")]);
    let toml = project.path().join("watchdog.toml");
    let mut settings = std::fs::read_to_string(&toml).unwrap();
    settings.push_str("max_concurrency = 1\n");
    std::fs::write(&toml, settings).unwrap();
    let server = TestServer::start(&api(&project), &[]);
    let ready = "warm worker ready route=/api/stale";
    assert!(server.wait_for_log(ready, Duration::from_secs(10)));
    let get = |path: &'static str, request_id: &'static str| {
        let url = server.url(path);
        async move {
            let response = client()
                .get(url)
                .header("X-Request-Id", request_id)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    // `busy` holds the function's only slot; `queued` waits for it, routed on
    // the table of before the change.
    let busy = tokio::spawn(get("/api/stale?sleep=3", "busy-1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = tokio::spawn(get("/api/stale", "queued-1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let file = api(&project).join("stale.py");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&file, text).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            server.log().matches(ready).count() >= 2
        }),
        "{}",
        server.log()
    );
    busy.await.unwrap();
    let queued = queued.await.unwrap();
    let after = get("/api/stale", "after-1").await;
    // The queued request took the new version's worker, not a pool of its own
    // that the next request would replace again.
    let line = server.log_line("invocation request_id=queued-1 ", Duration::from_secs(5));
    assert!(line.contains("start=\"warm\""), "{line}");
    assert_eq!(queued["pid"], after["pid"], "{}", server.log());
    assert_eq!(server.log().matches(ready).count(), 2, "{}", server.log());
}

#[tokio::test]
async fn idle_workers_are_stopped_and_max_requests_recycles() {
    let project = project(&[
        ("idle", "idle_timeout = \"1s\""),
        ("recycled", "max_requests = 2"),
    ]);
    let server = TestServer::start(&api(&project), &[]);
    let (_, first) = call(&server, "/api/idle").await;
    let pid = first["pid"].as_i64().unwrap() as i32;
    assert!(
        common::wait_until(Duration::from_secs(4), || gone(pid)),
        "idle worker {pid} was not stopped"
    );
    let (_, later) = call(&server, "/api/idle").await;
    assert_ne!(later["pid"], first["pid"]);

    let pids: Vec<serde_json::Value> = {
        let mut pids = Vec::new();
        for _ in 0..3 {
            pids.push(call(&server, "/api/recycled").await.1["pid"].clone());
        }
        pids
    };
    assert_eq!(pids[0], pids[1]);
    assert_ne!(
        pids[1], pids[2],
        "the worker was not recycled after max_requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_wait_and_all_succeed() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &[]);
    let started = Instant::now();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url("/api/counter?sleep=0.3");
            tokio::spawn(async move { client().get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1150),
        "{:?}",
        started.elapsed()
    );
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains("watchdog_cold_starts_total{route=\"/api/counter\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchdog_warm_hits_total{route=\"/api/counter\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_crash_loop_answers_503_until_the_file_changes() {
    let project = project(&[("counter", "max = 1")]);
    let file = api(&project).join("counter.py");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n").unwrap();
    let server = TestServer::start(&api(&project), &["--timeout", "20s"]);
    let started = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let response = client()
            .get(server.url("/api/counter"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").cloned();
        let text = response.text().await.unwrap();
        statuses.push(status);
        if status == 503 && text.contains("crashed 5 times") {
            // When the first of those crashes leaves the minute, and it tries
            // again; within a minute of now.
            let seconds: u64 = retry_after
                .expect("a crash-loop 503 says when to retry")
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
            assert!(text.contains(&format!("for {seconds} s more")), "{text}");
            // And what the crashes were, which only the log said before.
            assert!(
                text.contains("(the last crash: its start failed:")
                    && text.contains("before listening on $PORT"),
                "{text}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "never gave up: {statuses:?}"
        );
    }
    assert!(
        statuses.iter().filter(|s| **s == 502).count() >= 4,
        "{statuses:?}"
    );
    // Still crashed: no new start is attempted.
    assert_eq!(call(&server, "/api/counter").await.0, 503);
    // Fixing the file recycles the pool.
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, &good).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let fixed = Instant::now();
    loop {
        if call(&server, "/api/counter").await.0 == 200 {
            break;
        }
        assert!(
            fixed.elapsed() < Duration::from_secs(5),
            "the fixed file was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_helper_a_worker_moved_to_its_own_session_does_not_outlive_watchdog() {
    // The helper's pid goes beside DIR, not into it (a change there reloads).
    let project = one_worker(
        "helper.py",
        r#"#!/usr/bin/env python3
import os, subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer
helper = subprocess.Popen(["sleep", "1002"], start_new_session=True)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(root, "helper.pid"), "w") as f:
    f.write(str(helper.pid))
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), BaseHTTPRequestHandler).serve_forever()
"#,
        r#"warm = { protocol = "http", min = 1 }"#,
    );
    let server = TestServer::start(&api(&project), &[]);
    let pid_file = project.path().join("helper.pid");
    assert!(common::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|pid| !pid.is_empty())
    }));
    let helper: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(common::alive(helper));
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(10)));
    assert!(server.terminate().success());
    // Outside the worker's group, so stopping the group did not reach it; it
    // came to watchdog when the worker was stopped, and is stopped before exit.
    let stopped = common::wait_until(Duration::from_secs(3), || gone(helper));
    if !stopped {
        common::signal(helper, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(stopped, "the helper {helper} outlived watchdog");
}

/// An HTTP worker that takes `seconds` to listen, as a framework booting,
/// then answers its pid.
fn booting_worker(seconds: f64) -> String {
    format!(
        r#"#!/usr/bin/env python3
import os, time
from http.server import BaseHTTPRequestHandler, HTTPServer
time.sleep({seconds})
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#
    )
}

#[tokio::test]
async fn a_worker_slower_to_start_than_the_timeout_still_becomes_warm() {
    let project = one_worker(
        "slow.py",
        &booting_worker(1.5),
        "timeout = \"1s\"\nwarm = { protocol = \"http\", max = 1 }",
    );
    let server = TestServer::start(&api(&project), &[]);
    // The first request's own time runs out while the worker boots: 504. The
    // start goes on (it has at least 10 s, as Lambda's init phase), so the
    // worker comes up and serves what follows; it used to be killed at 1 s, and
    // every request was a 504.
    let first = tokio::spawn(client().get(server.url("/api/slow")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile the start holds the one place (`max = 1`): a request behind it
    // runs out of time waiting, a 504 that says so (it was a 503 "no worker
    // became free", as for a full queue).
    let queued = client().get(server.url("/api/slow")).send().await.unwrap();
    assert_eq!(queued.status(), 504);
    let text = queued.text().await.unwrap();
    assert!(
        text.contains("waiting for a warm worker (all `max` were busy or starting); it never ran"),
        "{text}"
    );
    assert!(text.contains("hint: raise `max`"), "{text}");
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 504);
    let text = first.text().await.unwrap();
    assert!(
        text.contains("waiting for a warm worker (the new one was still starting)"),
        "{text}"
    );
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(5)));
    let next = client().get(server.url("/api/slow")).send().await.unwrap();
    assert_eq!(next.status(), 200);
    // Both are timeouts in the log and the metrics, as a CGI 504 is.
    assert!(
        server.wait_for_log_count("status=504 timed_out=true", 2, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains("watchdog_timeouts_total{route=\"/api/slow\"} 2"),
        "{metrics}"
    );
    // Timeouts, but no kills: neither reached a process.
    assert_eq!(
        common::metric_sum(&metrics, "watchdog_kills_total{route=\"/api/slow\""),
        0.0,
        "{metrics}"
    );
}

/// A client that gives up while its request's worker starts does not cost
/// the next request a start of its own: the worker that comes up is kept.
/// It used to be dropped with the start's result nobody took, killed as it
/// became ready.
#[tokio::test]
async fn a_worker_whose_first_client_left_during_its_start_is_kept_for_the_next() {
    let project = one_worker(
        "booting.py",
        &booting_worker(2.0),
        "warm = { protocol = \"http\", max = 1, idle_timeout = \"2s\" }",
    );
    let server = TestServer::start(&api(&project), &[]);
    // The client closes its connection a moment after its request went out,
    // as curl's --max-time does.
    let mut impatient = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut impatient,
        b"GET /api/booting.py HTTP/1.1\r\nHost: test\r\nX-Request-Id: impatient-1\r\n\r\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(impatient);
    let line = server.log_line("invocation request_id=impatient-1 ", Duration::from_secs(5));
    assert!(line.contains("client_gone=true"), "{line}");
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(10)));
    // Idle since it became ready, not since it was spawned: an idle check
    // (every 500 ms) meanwhile took it for idle past `idle_timeout` and
    // stopped it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = client()
        .get(server.url("/api/booting.py"))
        .header("x-request-id", "next-1")
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    let pid = serde_json::Value::from(next.text().await.unwrap().parse::<u64>().unwrap());
    let line = server.log_line("invocation request_id=next-1 ", Duration::from_secs(5));
    assert!(line.contains("start=\"warm\""), "{line}");
    assert_eq!(
        server.log().matches("warm worker ready").count(),
        1,
        "{}",
        server.log()
    );
    // Its one worker serves on; its start is counted once, as a cold start.
    assert_eq!(call(&server, "/api/booting.py").await, (200, pid));
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains("watchdog_cold_starts_total{route=\"/api/booting\"} 1"),
        "{metrics}"
    );
}

/// watchdog killed outright (SIGKILL: no shutdown of its own) leaves no warm
/// worker behind: the guardian it forked at start stops their groups. Before,
/// the worker ran on, reparented to init, for as long as nobody found it.
#[tokio::test]
async fn warm_workers_do_not_outlive_a_killed_watchdog() {
    let project = project(&[("counter", "max = 1")]);
    let server = TestServer::start(&api(&project), &["--kill-grace", "500ms"]);
    let (status, answer) = call(&server, "/api/counter").await;
    assert_eq!(status, 200, "{answer}");
    let pid = answer["pid"].as_i64().unwrap() as i32;
    let log = server.log_buffer();
    server.stop_with(&[nix::sys::signal::Signal::SIGKILL]);
    // Not a zombie test: its new parent reaps it, not watchdog.
    assert!(
        common::wait_until(Duration::from_secs(10), || !common::alive(pid)),
        "worker {pid} outlived watchdog"
    );
    assert!(
        common::log_shows(&log, "the guardian stopped them", Duration::from_secs(5)),
        "{}",
        log.lock().unwrap()
    );
}

/// A client that stops reading a long answer does not hold the worker past
/// its timeout: at the deadline the worker is given back as stuck (stopped,
/// as a CGI function's group is) and the next request is served. It was held
/// until the client left, so `max` such connections shut everyone out.
#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_the_worker_past_its_timeout() {
    let project = project(&[("counter", "max = 1")]);
    // Long enough for the second request to start a worker on a busy machine.
    let server = TestServer::start(&api(&project), &["--timeout", "3s"]);
    let (status, _) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"GET /api/counter?big=256 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    // Never read: the answer fills the sockets' buffers and stops there.
    let line = server.log_line("timed_out=true", Duration::from_secs(10));
    assert!(line.contains("route=/api/counter"), "{}", server.log());
    // The pool's one place is free again: this is served, where it waited
    // behind the stalled answer and had a 504 at its own timeout.
    let (status, _) = call(&server, "/api/counter").await;
    assert_eq!(status, 200);
    drop(stalled);
}
