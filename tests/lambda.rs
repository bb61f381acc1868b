//! `protocol = "lambda"`: a real, unmodified Lambda Runtime API client (a binary
//! built with the `lambda_http` crate from crates.io) runs warm (issue 5).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::{TestServer, client, fixtures};

/// Builds fixtures/lambda-hello once per test run.
fn lambda_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fixtures");
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--manifest-path"])
                .arg(fixtures("lambda-hello/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("run cargo");
            assert!(status.success(), "building fixtures/lambda-hello failed");
            target.join("debug/lambda-hello")
        })
        .clone()
}

fn project(warm: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    std::fs::create_dir_all(&api).unwrap();
    let binary = api.join("hello-lambda");
    std::fs::copy(lambda_binary(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        project.path().join("watchdog.toml"),
        format!("[functions.\"hello-lambda\"]\nwarm = {{ protocol = \"lambda\"{warm} }}\n"),
    )
    .unwrap();
    project
}

#[tokio::test]
async fn a_lambda_http_binary_answers_get_and_post_and_is_reused() {
    let project = project("");
    let server = TestServer::start(&project.path().join("api"), &[]);
    let c = client();
    let first = c
        .get(server.url("/api/hello-lambda?name=Ada"))
        .header("Cookie", "a=1; b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "application/json");
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["greeting"], "hello Ada");
    assert_eq!(first["path"], "/api/hello-lambda");
    assert_eq!(first["cookie"], "a=1; b=2");

    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let posted = c
        .post(server.url("/api/hello-lambda"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Request-Id", "lbin-1")
        .body(binary.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    assert_eq!(posted.headers()["set-cookie"], "seen=1; Path=/");
    let pid = posted.headers()["x-pid"].to_str().unwrap().to_owned();
    assert_eq!(
        posted.bytes().await.unwrap().to_vec(),
        binary,
        "the binary body came back changed"
    );
    // A buffered answer is counted as the client got it: the decoded body, not
    // the base64 the runtime posted.
    let line = server.log_line("invocation request_id=lbin-1 ", Duration::from_secs(5));
    assert!(line.contains(" bytes_in=4096 bytes_out=4096"), "{line}");
    assert_eq!(
        pid,
        first["pid"].to_string(),
        "the second request reused the process"
    );

    // The client's request id names the invocation in the runtime's URLs: one
    // that a URL path cannot hold as it is must not hold the worker until the
    // timeout.
    let third = common::send_json(
        c.get(server.url("/api/hello-lambda"))
            .header("X-Request-Id", "a/b?c#d%41")
            .timeout(std::time::Duration::from_secs(10)),
    )
    .await;
    assert_eq!(third["pid"], first["pid"]);
    assert_eq!(third["greeting"], "hello world");
    assert!(server.wait_for_log("start=\"warm\"", Duration::from_secs(2)));
    assert!(server.log().contains("lambda worker ready"));
}

#[tokio::test]
async fn a_lambda_timeout_kills_and_replaces_the_worker() {
    let project = project(", max = 1");
    let script = project.path().join("api/slow-lambda.sh");
    // A runtime client that takes an invocation and never answers.
    std::fs::write(
        &script,
        "#!/bin/sh\nwhile :; do curl -s \"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/next\" >/dev/null; sleep 60; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut toml = std::fs::read_to_string(project.path().join("watchdog.toml")).unwrap();
    toml.push_str(
        "\n[functions.\"slow-lambda.sh\"]\ntimeout = \"1s\"\nwarm = { protocol = \"lambda\" }\n",
    );
    std::fs::write(project.path().join("watchdog.toml"), toml).unwrap();
    let server = TestServer::start(&project.path().join("api"), &[]);
    let response = client()
        .get(server.url("/api/slow-lambda"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(server.wait_for_log(
        "killing a worker whose request ran past its time",
        Duration::from_secs(3)
    ));
}

/// Adds `api/NAME` holding `script` (executable) to the project, warm over the
/// Lambda protocol, with `settings` (lines such as `timeout = "1s"`) and `warm`
/// (more of its inline table, such as `, max = 1`) in its watchdog.toml section.
fn add_runtime(project: &tempfile::TempDir, name: &str, settings: &str, warm: &str, script: &str) {
    let toml = project.path().join("watchdog.toml");
    let mut config = std::fs::read_to_string(&toml).unwrap();
    config.push_str(&format!(
        "\n[functions.\"{name}\"]\n{settings}warm = {{ protocol = \"lambda\"{warm} }}\n"
    ));
    std::fs::write(&toml, config).unwrap();
    let path = project.path().join("api").join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes `api/NAME`: a minimal runtime client that answers every invocation in
/// response-streaming mode with what the shell commands `answer` print, and its
/// section in watchdog.toml, warm over the Lambda protocol, with `settings`
/// (lines such as `timeout = "1s"`) on top.
fn streaming_runtime(project: &tempfile::TempDir, name: &str, settings: &str, answer: &str) {
    add_runtime(
        project,
        name,
        settings,
        "",
        &format!(
            r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while :; do
  id=$(curl -s -D - -o /dev/null "$api/invocation/next" | tr -d '\r' | awk 'tolower($1) == "lambda-runtime-aws-request-id:" {{print $2}}')
  {{ {answer}
  }} | curl -s -T - -X POST -H 'Lambda-Runtime-Function-Response-Mode: streaming' \
      -H 'Content-Type: application/vnd.awslambda.http-integration-response' \
      "$api/invocation/$id/response" >/dev/null
done
"#
        ),
    );
}

#[tokio::test]
async fn a_worker_that_exits_after_its_answer_does_not_take_the_next_request_down() {
    let project = project("");
    // A runtime that answers one event and then ends, as the official Python
    // client does after a rejected answer; it is still there, lent out again,
    // when the next request comes.
    add_runtime(
        &project,
        "once.sh",
        "",
        ", max = 1",
        r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
id=$(curl -s -D - -o /dev/null "$api/invocation/next" | tr -d '\r' | awk 'tolower($1) == "lambda-runtime-aws-request-id:" {print $2}')
curl -s -X POST -d "{\"statusCode\":200,\"body\":\"pid $$\"}" "$api/invocation/$id/response" >/dev/null
sleep 0.3
"#,
    );
    let server = TestServer::start(&project.path().join("api"), &["--timeout", "10s"]);
    let get = || client().get(server.url("/api/once")).send();
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    let first = first.text().await.unwrap();
    // The event goes to a new worker instead of failing with the one that ended
    // without taking it (a 502 "exited during the invocation" before).
    let second = get().await.unwrap();
    assert_eq!(second.status(), 200);
    let second = second.text().await.unwrap();
    assert!(
        first.starts_with("pid ") && second.starts_with("pid "),
        "{first} {second}"
    );
    assert_ne!(
        first, second,
        "the second request ran on the worker that had ended"
    );
    // Ending with status 0 after its answer is retiring, not crashing: past
    // the five crashes a minute that would make the function answer 503.
    for round in 0..5 {
        let next = get().await.unwrap();
        assert_eq!(next.status(), 200, "round {round}");
    }
    let log = server.log();
    assert!(!log.contains("worker crashed"), "{log}");
}

/// The user's own AWS variables win over the stand-ins watchdog sets, as with
/// `-e` and AWS's runtime interface emulator; the Runtime API stays watchdog's.
#[tokio::test]
async fn the_users_own_aws_variables_reach_the_runtime() {
    let project = project("");
    header_runtime(
        &project,
        "env.sh",
        "env = { AWS_REGION = \"eu-west-1\", _HANDLER = \"index.handler\", AWS_LAMBDA_RUNTIME_API = \"nowhere:1\" }\n",
        "$AWS_REGION $AWS_DEFAULT_REGION $_HANDLER $AWS_LAMBDA_FUNCTION_NAME $AWS_LAMBDA_INITIALIZATION_TYPE",
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let answer = client().get(server.url("/api/env")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "eu-west-1 eu-west-1 index.handler api-env on-demand"
    );
}

/// Writes `api/NAME`: a shell runtime whose answer to each event is a 200
/// with `body`, shell words in which `$(next_header NAME)` is a header of the
/// event's `/invocation/next` response; `settings` as in [`add_runtime`].
fn header_runtime(project: &tempfile::TempDir, name: &str, settings: &str, body: &str) {
    add_runtime(
        project,
        name,
        settings,
        "",
        &format!(
            r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
next_header() {{ echo "$head" | awk -v n="$1:" 'tolower($1) == n {{print $2}}'; }}
while :; do
  head=$(curl -s -D - -o /dev/null "$api/invocation/next" | tr -d '\r')
  id=$(next_header lambda-runtime-aws-request-id)
  curl -s -X POST -d "{{\"statusCode\":200,\"body\":\"{body}\"}}" "$api/invocation/$id/response" >/dev/null
done
"#
        ),
    );
}

/// A region set only as `AWS_DEFAULT_REGION` (as AWS CLI users do) is the
/// function's region too: in `AWS_REGION` and in its ARN.
#[tokio::test]
async fn a_default_region_alone_sets_the_region_and_the_arn() {
    let project = project("");
    header_runtime(
        &project,
        "region.sh",
        "env = { AWS_DEFAULT_REGION = \"eu-north-1\" }\n",
        "$AWS_REGION $(next_header lambda-runtime-invoked-function-arn)",
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let answer = client()
        .get(server.url("/api/region"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.text().await.unwrap(),
        "eu-north-1 arn:aws:lambda:eu-north-1:000000000000:function:api-region"
    );
}

/// A client's X-Ray trace header reaches the runtime as Lambda passes it on;
/// without one, the runtime gets a well-formed one (X-Ray's 8 + 24 hex digits).
#[tokio::test]
async fn the_runtime_gets_the_clients_trace_or_a_well_formed_one() {
    let project = project("");
    header_runtime(
        &project,
        "trace.sh",
        "",
        "$(next_header lambda-runtime-trace-id)",
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let trace = |incoming: Option<&'static str>| {
        let mut request = client()
            .get(server.url("/api/trace"))
            .header("x-request-id", "123e4567-e89b-12d3-a456-426614174000");
        if let Some(incoming) = incoming {
            request = request.header("x-amzn-trace-id", incoming);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let clients = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    assert_eq!(trace(Some(clients)).await, clients);
    let made = trace(None).await;
    let root = made.strip_prefix("Root=1-").unwrap_or_default();
    let (time, rest) = root.split_once('-').unwrap_or_default();
    let id = rest.split(';').next().unwrap_or_default();
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(hex(time, 8) && hex(id, 24), "{made}");
}

/// A shell runtime (curl) as `api/NAME`: for each event, posts what the shell
/// commands `answer` print as its buffered answer; `$event` is the event's file.
fn buffered_runtime(project: &tempfile::TempDir, name: &str, answer: &str) {
    add_runtime(
        project,
        name,
        "",
        "",
        &format!(
            r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
event=$(mktemp)
while :; do
  id=$(curl -s -D - -o "$event" "$api/invocation/next" | tr -d '\r' | awk 'tolower($1) == "lambda-runtime-aws-request-id:" {{print $2}}')
  {{ {answer}
  }} | curl -s -X POST --data-binary @- "$api/invocation/$id/response" >/dev/null
done
"#
        ),
    );
}

/// Behind a balancer named by `--trusted-proxy`, the event's `sourceIp` is
/// the client the balancer names, as a Function URL's is the caller's.
#[tokio::test]
async fn behind_a_trusted_proxy_the_events_source_ip_is_the_client() {
    let project = project("");
    buffered_runtime(&project, "event.sh", r#"cat "$event""#);
    let server = TestServer::start(
        &project.path().join("api"),
        &["--trusted-proxy", "127.0.0.1"],
    );
    let event = common::send_json(
        client()
            .get(server.url("/api/event"))
            .header("X-Forwarded-For", "203.0.113.7"),
    )
    .await;
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "203.0.113.7");
    // The chain goes on with the hop the balancer came from.
    assert_eq!(
        event["headers"]["x-forwarded-for"],
        "203.0.113.7, 127.0.0.1"
    );
}

#[tokio::test]
async fn the_event_says_who_the_client_was_and_the_answer_has_its_real_length() {
    let project = project("");
    buffered_runtime(&project, "event.sh", r#"cat "$event""#);
    // 13 bytes, but 11 by JavaScript's count of UTF-16 units.
    buffered_runtime(
        &project,
        "short.sh",
        r#"printf '{"statusCode":200,"headers":{"content-length":"11"},"body":"h\u00e9llo w\u00f6rld"}'"#,
    );
    // Header values as handlers written for API Gateway send them.
    buffered_runtime(
        &project,
        "typed.sh",
        r#"printf '{"statusCode":200,"headers":{"access-control-allow-credentials":true,"x-count":5,"x-none":null},"multiValueHeaders":{"x-ratio":[0.5,"half"]}}'"#,
    );
    buffered_runtime(
        &project,
        "nested.sh",
        r#"printf '{"statusCode":200,"headers":{"x-bad":{"a":1}}}'"#,
    );
    // A status as a string, as some handlers built for API Gateway send it; a
    // body that is not text, and a status that is none, are errors that say so
    // (they were a 200 with an empty body, and a 200 whose body was the object).
    buffered_runtime(
        &project,
        "text-status.sh",
        r#"printf '{"statusCode":"404","body":"gone"}'"#,
    );
    buffered_runtime(
        &project,
        "object-body.sh",
        r#"printf '{"statusCode":200,"body":{"a":1}}'"#,
    );
    buffered_runtime(
        &project,
        "word-status.sh",
        r#"printf '{"statusCode":"fine","body":"x"}'"#,
    );
    buffered_runtime(
        &project,
        "odd-status.sh",
        r#"printf '{"statusCode":600,"body":"x"}'"#,
    );
    // A 204 with a body, which HTTP forbids: the body goes, and no length is
    // announced for it (it said `content-length: 17` and sent nothing).
    buffered_runtime(
        &project,
        "no-content.sh",
        r#"printf '{"statusCode":204,"body":"should-not-appear"}'"#,
    );
    // What the Runtime API tells a runtime that answers an event it never got.
    buffered_runtime(
        &project,
        "stray.sh",
        r#"curl -s -w '\n%{http_code}' -X POST -d '{}' "$api/invocation/no-such-id/response" |
    { read -r reply; read -r code; printf '{"code":%s,"reply":%s}' "$code" "$reply"; }"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let stray = common::send_json(
        client()
            .get(server.url("/api/stray"))
            .header("X-Request-Id", "stray-1"),
    )
    .await;
    assert_eq!(stray["code"], 400, "{stray}");
    assert_eq!(stray["reply"]["errorType"], "InvalidRequestID", "{stray}");
    // And the log says which id was answered, and which one awaits.
    let line = server.log_line("awaits no answer", Duration::from_secs(5));
    assert!(
        line.contains("answered_for=no-such-id") && line.contains("awaiting=stray-1"),
        "{line}"
    );
    // The event is the answer: any JSON without `statusCode` is the body.
    let event = common::send_json(
        client()
            .get(server.url("/api/event"))
            .header("X-Forwarded-For", "1.2.3.4"),
    )
    .await;
    assert_eq!(event["headers"]["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
    assert_eq!(event["headers"]["x-forwarded-proto"], "http");
    // No proxy is trusted: the client's claim is not its address.
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    let short = client().get(server.url("/api/short")).send().await.unwrap();
    assert_eq!(short.headers()["content-length"], "13");
    assert_eq!(short.text().await.unwrap(), "h\u{e9}llo w\u{f6}rld");
    // A number or a boolean is sent as its text (they were dropped before), null
    // as no header; an object is no header value, and the client is told so.
    let typed = client().get(server.url("/api/typed")).send().await.unwrap();
    assert_eq!(typed.status(), 200);
    let headers = typed.headers();
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["x-count"], "5");
    assert!(headers.get("x-none").is_none());
    let ratios: Vec<_> = headers.get_all("x-ratio").iter().collect();
    assert_eq!(ratios, ["0.5", "half"]);
    let (status, text) = get_text(&server, "/api/nested").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("header `x-bad` is a JSON object"), "{text}");
    assert_eq!(
        get_text(&server, "/api/text-status").await,
        (404, "gone".into())
    );
    let (status, text) = get_text(&server, "/api/object-body").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("`body` that is an object"), "{text}");
    assert!(
        text.contains("cannot be sent on"),
        "a bad answer, not a failed worker: {text}"
    );
    let (status, text) = get_text(&server, "/api/word-status").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("`statusCode` \"fine\""), "{text}");
    // A status a CGI function or an HTTP worker could not send either.
    let (status, text) = get_text(&server, "/api/odd-status").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("`statusCode` 600"), "{text}");
    let answer = common::raw_request(
        server.addr,
        b"GET /api/no-content HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("content-length"),
        "{answer}"
    );
    assert!(!answer.contains("should-not-appear"), "{answer}");
}

/// A request whose event would be past Lambda's 6 MB limit gets the 413
/// Lambda gives, and no worker sees it: one that works here and fails in
/// production is what a local runtime must not offer. Binary bodies go
/// base64, a third larger.
#[tokio::test]
async fn a_request_past_lambdas_limit_is_a_413_that_says_so_and_no_worker_sees_it() {
    let project = project("");
    let server = TestServer::start(&project.path().join("api"), &[]);
    let c = client();
    let post = |body: Vec<u8>| {
        c.post(server.url("/api/hello-lambda"))
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
    };
    let fits: Vec<u8> = (0..=255u8).cycle().take(4 << 20).collect();
    let answered = post(fits.clone()).await.unwrap();
    assert_eq!(answered.status(), 201);
    let pid = answered.headers()["x-pid"].to_str().unwrap().to_owned();
    assert_eq!(answered.bytes().await.unwrap().len(), fits.len());
    // 5 MiB of binary: an event of about 6.7 MiB.
    let binary: Vec<u8> = (0..=255u8).cycle().take(5 << 20).collect();
    let refused = post(binary).await.unwrap();
    assert_eq!(refused.status(), 413);
    let text = refused.text().await.unwrap();
    assert!(text.contains("makes a Lambda event of 699"), "{text}");
    assert!(
        text.contains("past Lambda's limit of 6291456 bytes"),
        "{text}"
    );
    assert!(text.contains("base64"), "{text}");
    // 7 MiB that is UTF-8 (an event carries it as is): refused once the
    // body alone is past the limit.
    let refused = post(vec![b'a'; 7 << 20]).await.unwrap();
    assert_eq!(refused.status(), 413);
    let text = refused.text().await.unwrap();
    assert!(text.contains("event of more than 6291456 bytes"), "{text}");
    // The worker saw neither, and serves on.
    let again = post(b"small".to_vec()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["x-pid"].to_str().unwrap(), pid);
}

/// With `--max-body` above the 64 MiB a runtime's answer is drained to, a
/// request past Lambda's limit is still read to its end and answered 413:
/// the server's own limit allows the upload, so it must not be cut off.
#[tokio::test]
async fn an_upload_past_lambdas_limit_under_a_large_max_body_is_read_to_its_413() {
    use std::io::{Read, Write};
    let project = project("");
    let server = TestServer::start(
        &project.path().join("api"),
        &["--max-body", "128MiB", "--timeout", "60s"],
    );
    // A plain client that sends its whole body before it reads: one a server
    // stops reading from fails in the middle of its write.
    let mut upload = std::net::TcpStream::connect(server.addr).unwrap();
    upload
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    upload
        .write_all(
            b"POST /api/hello-lambda HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
              Content-Type: text/plain\r\nContent-Length: 83886080\r\n\r\n",
        )
        .unwrap();
    upload
        .write_all(&vec![b'a'; 80 << 20])
        .expect("the whole upload is read, not cut off");
    let mut answer = Vec::new();
    upload.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("event of more than 6291456 bytes"),
        "{answer}"
    );
}

/// An upload already past Lambda's limit when its time runs out gets the 413
/// it had earned, not a 408 for being slow: no wait would have made it fit.
#[tokio::test]
async fn an_upload_past_lambdas_limit_that_stalls_is_a_413_at_its_deadline() {
    use std::io::{Read, Write};
    let project = project("");
    let server = TestServer::start(&project.path().join("api"), &["--timeout", "1s"]);
    let mut upload = std::net::TcpStream::connect(server.addr).unwrap();
    upload
        .write_all(
            b"POST /api/hello-lambda HTTP/1.1\r\nHost: test\r\n\
              Content-Type: text/plain\r\nContent-Length: 20971520\r\n\r\n",
        )
        .unwrap();
    // 7 MiB of the 20 announced, then nothing more.
    upload.write_all(&vec![b'a'; 7 << 20]).unwrap();
    upload
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = upload.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("event of more than 6291456 bytes"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_answer_past_lambdas_limit_is_a_502_that_says_so_and_the_worker_serves_on() {
    let project = project("");
    // 20 MiB for `?big` (past the 6 MiB limit, and past what a server that
    // stops reading leaves room for in the socket), else its pid.
    buffered_runtime(
        &project,
        "big.sh",
        r#"if grep -q '"rawQueryString":"big"' "$event"; then head -c 20971520 /dev/zero | tr '\0' a
    else printf '{"statusCode":200,"body":"pid %s"}' $$; fi"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let (_, first) = get_text(&server, "/api/big").await;
    let big = client()
        .get(server.url("/api/big?big"))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 502);
    let text = big.text().await.unwrap();
    assert!(text.contains("past Lambda's limit of 6291456"), "{text}");
    assert!(text.contains("streaming"), "{text}");
    // The worker did not fail, its answer is too large: no hint about how a
    // worker serves ($PORT, $AWS_LAMBDA_RUNTIME_API), which did not apply.
    assert!(text.contains("its answer cannot be sent on"), "{text}");
    assert!(!text.contains("$PORT"), "{text}");
    // Not a crash: the same worker answers the next request.
    let (status, again) = get_text(&server, "/api/big").await;
    assert_eq!(status, 200);
    assert_eq!(first, again);
}

#[tokio::test]
async fn an_error_a_runtime_reports_mid_stream_cuts_the_response_off() {
    let project = project("");
    // Starts a streamed answer, then reports an error in its trailers, as
    // lambda_runtime does when a stream fails.
    add_runtime(
        &project,
        "fails.py",
        "",
        "",
        r#"#!/usr/bin/env python3
import base64, os, socket, urllib.request
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
host, port = api.split(":")
while True:
    with urllib.request.urlopen(f"http://{api}/2018-06-01/runtime/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
    error = base64.b64encode(b'{"errorMessage":"boom"}')
    s = socket.create_connection((host, int(port)))
    s.sendall(f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\nHost: {api}\r\n"
              "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
              "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
              "6\r\nbegun\n\r\n0\r\nLambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
              "Lambda-Runtime-Function-Error-Body: ".encode() + error + b"\r\n\r\n")
    s.recv(4096)
    s.close()
"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let response = client()
        .get(server.url("/api/fails"))
        .header("X-Request-Id", "streamfail-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Not a clean end: the client can tell the body is not whole.
    assert!(response.bytes().await.is_err());
    let line = server.log_line("mid-stream", Duration::from_secs(5));
    assert!(
        line.contains("Runtime.StreamError") && line.contains("boom"),
        "{line}"
    );
    // Its invocation line says the answer was cut off, not just 200.
    let invocation = server.log_line("invocation request_id=streamfail-1", Duration::from_secs(5));
    assert!(invocation.contains("cut_off=true"), "{invocation}");
    // The runtime reported the error and serves on: it is not replaced. The
    // chunk and the error arrive together, and still the client gets the
    // status and the chunk before the cut, every time.
    for _ in 0..20 {
        let again = client().get(server.url("/api/fails")).send().await.unwrap();
        assert_eq!(again.status(), 200);
        let mut again = again;
        assert_eq!(&again.chunk().await.unwrap().unwrap()[..], b"begun\n");
        assert!(again.chunk().await.is_err());
    }
    assert_eq!(server.log().matches("lambda worker ready").count(), 1);
}

#[tokio::test]
async fn an_init_error_is_logged_and_its_text_kept_from_the_client() {
    let project = project("");
    add_runtime(
        &project,
        "broken.py",
        "",
        "",
        r#"#!/usr/bin/env python3
import os, time, urllib.request
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
body = b'{"errorMessage":"cannot reach db at postgres://admin:hunter2@db","errorType":"InitErr"}'
urllib.request.urlopen(urllib.request.Request(
    f"http://{api}/2018-06-01/runtime/init/error", data=body, method="POST"))
time.sleep(30)
"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let (status, text) = get_text(&server, "/api/broken").await;
    assert_eq!(status, 502);
    assert!(text.contains("init error"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let line = server.log_line("reported an init error", Duration::from_secs(5));
    assert!(
        line.contains("hunter2") && line.contains("InitErr"),
        "{line}"
    );
}

/// A runtime that takes longer to start than its function's timeout still
/// answers its first request: as on Lambda, whose init has a budget of its
/// own, the invocation's time starts once the runtime asks for the event. And
/// the Runtime API's headers come in the case AWS's do, which a bootstrap that
/// copies them into a plain map relies on.
#[tokio::test]
async fn a_slow_init_does_not_eat_the_invocations_time_and_headers_are_in_aws_case() {
    let project = project("");
    add_runtime(
        &project,
        "slow-init.py",
        "timeout = \"1s\"\n",
        "",
        r#"#!/usr/bin/env python3
import json, os, time, urllib.request
time.sleep(1.5)
base = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"
while True:
    with urllib.request.urlopen(f"{base}/next") as r:
        headers = dict(r.getheaders())
    left = int(headers["Lambda-Runtime-Deadline-Ms"]) - int(time.time() * 1000)
    body = json.dumps({"left_ms": left, "names": sorted(headers)})
    answer = json.dumps({"statusCode": 200, "body": body}).encode()
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    urllib.request.urlopen(urllib.request.Request(f"{base}/{rid}/response", data=answer, method="POST"))
"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let (status, text) = get_text(&server, "/api/slow-init").await;
    assert_eq!(status, 200, "{text}\n{}", server.log());
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The deadline the runtime was given lies ahead by about the timeout, not
    // behind by the time its start took.
    let left = answer["left_ms"].as_i64().unwrap();
    assert!(left > 300, "{answer}");
    let names = answer["names"].to_string();
    for name in [
        "Lambda-Runtime-Aws-Request-Id",
        "Lambda-Runtime-Deadline-Ms",
        "Lambda-Runtime-Invoked-Function-Arn",
        "Lambda-Runtime-Trace-Id",
        "Content-Type",
    ] {
        assert!(names.contains(name), "{name} not in {names}");
    }
}

/// A runtime that reports its invocation's error at `/error`, as the official
/// clients do for a handler's exception: the client gets a 502 without the
/// error's text, the log has the text and the type the runtime named, and
/// the worker serves on.
#[tokio::test]
async fn an_invocation_error_is_a_502_and_logged_with_its_type() {
    let project = project("");
    add_runtime(
        &project,
        "fails.sh",
        "",
        "",
        r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while :; do
  id=$(curl -s -D - -o /dev/null "$api/invocation/next" | tr -d '\r' | awk 'tolower($1) == "lambda-runtime-aws-request-id:" {print $2}')
  printf '{"errorMessage":"boom at row %s","errorType":"ValueError"}' $$ |
    curl -s -X POST -H 'Lambda-Runtime-Function-Error-Type: Runtime.UserError' \
      --data-binary @- "$api/invocation/$id/error" >/dev/null
done
"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let (status, text) = get_text(&server, "/api/fails").await;
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains("boom"), "{text}");
    let line = server.log_line("the function returned an error", Duration::from_secs(5));
    assert!(
        line.contains("error_type=Runtime.UserError") && line.contains("boom at row"),
        "{line}"
    );
    // The same worker answers the next one.
    let (status, _) = get_text(&server, "/api/fails").await;
    assert_eq!(status, 502);
    assert_eq!(server.log().matches("lambda worker ready").count(), 1);
}

async fn get_text(server: &TestServer, path: &str) -> (u16, String) {
    let response = client().get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_streamed_lambda_response_is_passed_through_as_it_arrives() {
    let project = project("");
    // The HTTP integration prelude, eight NUL bytes, then the body in two pieces.
    streaming_runtime(
        &project,
        "streamer.sh",
        "",
        r#"printf '{"statusCode":201,"headers":{"x-streamed":"yes"},"cookies":["s=1"]}'
    printf '\000\000\000\000\000\000\000\000'
    printf 'chunk one\n'; sleep 0.6; printf 'chunk two\n'"#,
    );
    streaming_runtime(
        &project,
        "ticker.sh",
        "",
        r#"printf '{"statusCode":200}'; printf '\000\000\000\000\000\000\000\000'
    for i in $(seq 25); do printf 'tick\n'; sleep 0.2; done"#,
    );
    // A prelude that is no valid response head: a bad answer, as a buffered one.
    streaming_runtime(
        &project,
        "bad-prelude.sh",
        "",
        r#"printf '{"statusCode":"fine"}'; printf '\000\000\000\000\000\000\000\000'; printf 'body'"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let (status, text) = get_text(&server, "/api/bad-prelude").await;
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("cannot be sent on") && text.contains("`statusCode` \"fine\""),
        "{text}"
    );
    let response = client()
        .get(server.url("/api/streamer"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-streamed"], "yes");
    assert_eq!(response.headers()["set-cookie"], "s=1");
    let streamed = common::read_streamed(response).await;
    assert_eq!(
        [streamed.first, streamed.rest].concat(),
        b"chunk one\nchunk two\n"
    );
    assert!(
        streamed.spread >= Duration::from_millis(400),
        "not streamed: {:?}",
        streamed.spread
    );
    // A HEAD answer has no body to read: its worker is given back, not stopped.
    let head = client()
        .head(server.url("/api/streamer"))
        .header("X-Request-Id", "lhead-1")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 201);
    assert!(head.headers().get("content-length").is_none(), "{head:?}");
    let line = server.log_line("invocation request_id=lhead-1 ", Duration::from_secs(5));
    assert!(line.contains("client_gone=false"), "{line}");
    // A client that leaves after the first piece is logged as gone, and its
    // worker, still streaming into the void, is kept: it asks for its next
    // event once its answer is over (as an HTTP worker is kept when its
    // client leaves mid-body).
    drop(common::get_until(
        server.addr,
        "/api/ticker",
        "lleft-1",
        "tick",
    ));
    let line = server.log_line("invocation request_id=lleft-1 ", Duration::from_secs(5));
    assert!(line.contains("client_gone=true"), "{line}");
    let after_head = client()
        .get(server.url("/api/streamer"))
        .send()
        .await
        .unwrap();
    assert_eq!(after_head.status(), 201);
    drop(after_head);
    assert!(
        !server.log().contains("stopping a warm worker"),
        "{}",
        server.log()
    );
    // Nor is it counted as killed: nothing was.
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert_eq!(
        common::metric_sum(&metrics, "watchdog_kills_total{route=\"/api/ticker\""),
        0.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stalled_upload_holds_no_worker_and_is_answered_408() {
    let project = project(", max = 1");
    let server = TestServer::start(&project.path().join("api"), &["--body-idle-timeout", "4s"]);
    let pid_of = |answer: serde_json::Value| answer["pid"].clone();
    let get = || async {
        client()
            .get(server.url("/api/hello-lambda"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let before = pid_of(get().await);
    let mut stream = common::start_upload(server.addr, "/api/hello-lambda", "lstall-1", 1000, 4);
    // While that upload stalls, the only worker still serves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    assert_eq!(pid_of(get().await), before, "the worker was kept");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the stalled upload held the worker"
    );
    let answer = common::read_answer(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let line = server.log_line("invocation request_id=lstall-1 ", Duration::from_secs(5));
    assert!(
        line.contains("status=408") && line.contains("bytes_in=4 "),
        "{line}"
    );
}

#[tokio::test]
async fn a_streamed_lambda_response_is_bound_by_the_timeout() {
    let project = project("");
    // Never finishes its prelude; streams its body for 30 s.
    let one_second = "timeout = \"1s\"\n";
    streaming_runtime(
        &project,
        "late-head.sh",
        one_second,
        "sleep 30; printf '{}'",
    );
    streaming_runtime(
        &project,
        "long-body.sh",
        one_second,
        r#"printf '{"statusCode":200}'; printf '\000\000\000\000\000\000\000\000'
    for i in $(seq 100); do printf 'tick\n'; sleep 0.3; done"#,
    );
    let server = TestServer::start(&project.path().join("api"), &[]);
    let started = std::time::Instant::now();
    let late = client()
        .get(server.url("/api/late-head"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    let started = std::time::Instant::now();
    let long = client()
        .get(server.url("/api/long-body"))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 200);
    let (_, ended) = common::drain(long).await;
    assert!(ended.is_err(), "the body was not cut off at the timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.wait_for_log(
        "killing a worker whose request ran past its time",
        Duration::from_secs(3)
    ));
    let line = server.log_line("route=/api/long-body file=", Duration::from_secs(3));
    assert!(line.contains("timed_out=true"), "{line}");
}

/// A worker's Runtime API serves only the worker's user: another local user's
/// process could otherwise take the next event (a client's headers and body)
/// and answer it in the function's name.
#[tokio::test]
async fn another_users_process_is_turned_away_from_the_runtime_api() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let project = project("");
    header_runtime(&project, "endpoint.sh", "", "$AWS_LAMBDA_RUNTIME_API");
    let server = TestServer::start(&project.path().join("api"), &[]);
    let api = common::get_text(server.url("/api/endpoint")).await;
    assert!(api.starts_with("127.0.0.1:"), "{api}");
    let forge_as = |uid: Option<u32>| {
        use std::os::unix::process::CommandExt;
        let mut curl = std::process::Command::new("curl");
        curl.args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-X", "POST", "-d", "{}"])
            .arg(format!(
                "http://{api}/2018-06-01/runtime/invocation/forged/response"
            ));
        if let Some(uid) = uid {
            curl.uid(uid).gid(uid);
        }
        String::from_utf8(curl.output().unwrap().stdout).unwrap()
    };
    assert_eq!(forge_as(None), "400", "the worker's own user is answered");
    assert_eq!(
        forge_as(Some(65534)),
        "000",
        "another user's process gets no answer"
    );
    assert!(server.wait_for_log("from another user's process", Duration::from_secs(5)));
}

/// A client that stops reading a streamed answer does not hold the worker
/// past its timeout: the stream's own deadline is looked at only when hyper
/// polls it, which it stops doing once the client's socket is full.
#[tokio::test]
async fn a_client_that_stops_reading_a_stream_does_not_hold_the_worker_past_its_timeout() {
    let project = project("");
    streaming_runtime(
        &project,
        "flood.sh",
        "",
        r#"printf '{"statusCode":200}'; printf '\000\000\000\000\000\000\000\000'
    head -c 268435456 /dev/zero"#,
    );
    let server = TestServer::start(&project.path().join("api"), &["--timeout", "2s"]);
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut stalled, b"GET /api/flood HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // Never read.
    let line = server.log_line("timed_out=true", Duration::from_secs(10));
    assert!(line.contains("route=/api/flood"), "{}", server.log());
    drop(stalled);
}
