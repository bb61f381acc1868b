//! The Node adapter (issue 6): Vercel-style handler modules, both signatures, run
//! warm with real Node.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client, copy_fixture, fixtures, send_json};

fn server(flags: &[&str]) -> TestServer {
    let mut all = vec!["--prefix", "/api", "--env", "STAGE=dev"];
    all.extend_from_slice(flags);
    TestServer::start_with(&fixtures("node"), &all, |command| {
        command.env("WATCHDOG_TEST_SECRET", "leak");
    })
}

async fn json(server: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let response = client().get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn web_signature_get_post_state_and_environment() {
    let server = server(&[]);
    let (status, first) = json(&server, "/api/web?name=Ada").await;
    assert_eq!(status, 200);
    assert_eq!(first["name"], "Ada");
    assert_eq!(
        first["stage"], "dev",
        "process.env holds the function's environment"
    );
    assert_eq!(
        first["secret"],
        serde_json::Value::Null,
        "watchdog's own environment stays out"
    );
    let (_, second) = json(&server, "/api/web").await;
    assert_eq!(
        second["count"], 2,
        "module-scope state persists between requests"
    );
    assert_eq!(second["pid"], first["pid"]);
    let posted = client()
        .post(server.url("/api/web"))
        .json(&serde_json::json!({ "hello": "world" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    assert_eq!(posted.headers()["set-cookie"], "posted=1; Path=/");
    let posted: serde_json::Value = posted.json().await.unwrap();
    assert_eq!(posted["received"]["hello"], "world");
    let put = client().put(server.url("/api/web")).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST, HEAD");
    let fetched = client()
        .delete(server.url("/api/fetch"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.text().await.unwrap(), "from fetch DELETE");
    // An Edge function (`config.runtime = 'edge'`) takes (request, context),
    // though it declares two parameters, as Node-style handlers do.
    let edge = client()
        .get(server.url("/api/edge?n=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(edge.status(), 200);
    assert_eq!(edge.text().await.unwrap(), "edge 5");
}

#[tokio::test]
async fn node_signature_with_vercel_helpers() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/users/42?tab=posts&tag=a&tag=b"))
        .header("Cookie", "session=abc; theme=\"dark\"")
        .send()
        .await
        .unwrap();
    let user: serde_json::Value = response.json().await.unwrap();
    assert_eq!(user["id"], "42");
    assert_eq!(user["tab"], "posts");
    assert_eq!(user["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(user["cookies"]["session"], "abc");
    assert_eq!(user["cookies"]["theme"], "dark");
    // X-Watchdog-* headers are watchdog's to set: a client cannot inject route
    // parameters through them.
    let spoofed = send_json(
        client()
            .get(server.url("/api/users/7"))
            .header("X-Watchdog-Params", r#"{"id":"evil","tab":"evil"}"#),
    )
    .await;
    assert_eq!(spoofed["id"], "7");
    assert_eq!(spoofed["tab"], serde_json::Value::Null);

    let c = client();
    let unicode = send_json(c.get(server.url("/api/users/caf%C3%A9"))).await;
    assert_eq!(unicode["id"], "café");
    let form = send_json(
        c.post(server.url("/api/form"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("name=Ada+Lovelace&lang=en&lang=fr"),
    )
    .await;
    assert_eq!(
        form["body"],
        serde_json::json!({ "name": "Ada Lovelace", "lang": ["en", "fr"] })
    );
    // Keys named like Object.prototype members are values like any other
    // (they were [null, "1"] arrays, and __proto__ was dropped).
    let named = send_json(
        c.post(server.url("/api/form"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("constructor=1&toString=2&__proto__=3"),
    )
    .await;
    assert_eq!(
        named["body"],
        serde_json::json!({ "constructor": "1", "toString": "2", "__proto__": "3" })
    );
    let cookie = send_json(
        c.get(server.url("/api/users/1"))
            .header("Cookie", "constructor=c; valueOf=v"),
    )
    .await;
    assert_eq!(cookie["cookies"]["constructor"], "c", "{cookie}");
    assert_eq!(cookie["cookies"]["valueOf"], "v", "{cookie}");
    let parsed = send_json(
        c.post(server.url("/api/form"))
            .json(&serde_json::json!({ "a": [1, 2] })),
    )
    .await;
    assert_eq!(parsed["body"]["a"], serde_json::json!([1, 2]));
    let text = send_json(
        c.post(server.url("/api/form"))
            .header("Content-Type", "text/plain")
            .body("just text"),
    )
    .await;
    assert_eq!(text["body"], "just text");
    let invalid = c
        .post(server.url("/api/form"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    // Vercel's rules exactly, and an assignable req.body.
    for (content_type, body, want_type, want) in [
        (
            Some("application/json"),
            "",
            "object",
            serde_json::json!({}),
        ),
        (None, "untyped", "string", serde_json::json!("")),
        (
            Some("text/html"),
            "<b>",
            "undefined",
            serde_json::Value::Null,
        ),
        (
            Some("application/octet-stream"),
            "raw",
            "object",
            serde_json::json!("buffer"),
        ),
    ] {
        let mut request = c.post(server.url("/api/body-rules")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let answer = send_json(request).await;
        assert_eq!(answer["type"], want_type, "{content_type:?}: {answer}");
        assert_eq!(answer["first"], want, "{content_type:?}: {answer}");
        assert_eq!(
            answer["after"]["assigned"], true,
            "{content_type:?}: {answer}"
        );
    }
    let caught = send_json(
        c.post(server.url("/api/body-rules"))
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(caught["caught"], 400, "{caught}");

    let temporary = c.get(server.url("/api/redirect")).send().await.unwrap();
    assert_eq!(temporary.status(), 307);
    assert_eq!(temporary.headers()["location"], "/api/web");
    let permanent = c
        .get(server.url("/api/redirect?permanent=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(permanent.status(), 308);

    // res.send as Vercel's helper: null is an empty body, a number is JSON, and
    // a 204 has neither body nor type.
    let send = |v: &'static str| c.get(server.url(&format!("/api/send?v={v}"))).send();
    let null = send("null").await.unwrap();
    let null_tag = null.headers()["etag"].clone();
    assert_eq!(null.text().await.unwrap(), "");
    let number = send("number").await.unwrap();
    assert!(
        number.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(number.text().await.unwrap(), "42");
    let none = send("no-content").await.unwrap();
    assert_eq!(none.status(), 204);
    assert!(none.headers().get("content-type").is_none());
    let none = send("no-content-json").await.unwrap();
    assert_eq!(none.status(), 204);
    assert!(none.headers().get("content-type").is_none(), "{none:?}");
    assert!(none.headers().get("etag").is_none(), "{none:?}");
    // A HEAD answer has the GET's length (`<b>text</b>`), as Express and
    // Vercel's helper send it: Node alone would give it none.
    let head = c.head(server.url("/api/send")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "11", "{head:?}");

    // A whole body gets Vercel's weak ETag (the `etag` package's: the length in
    // hex, then the SHA-1 in base64; this one is that package's constant for an
    // empty body), and a GET that already holds it gets 304 without a body.
    assert_eq!(null_tag, r#"W/"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk""#);
    let text = c.get(server.url("/api/send")).send().await.unwrap();
    let tag = text.headers()["etag"].clone();
    assert!(tag.to_str().unwrap().starts_with(r#"W/"b-"#), "{tag:?}");
    let conditional = |tag: &str, v: &str| {
        c.get(server.url(&format!("/api/send?v={v}")))
            .header("if-none-match", tag)
            .send()
    };
    let current = conditional(tag.to_str().unwrap(), "text").await.unwrap();
    assert_eq!(current.status(), 304);
    assert!(current.headers().get("content-type").is_none());
    assert_eq!(current.text().await.unwrap(), "");
    let among = format!(r#""other", {}"#, tag.to_str().unwrap());
    assert_eq!(conditional(&among, "text").await.unwrap().status(), 304);
    let stale = conditional(r#"W/"b-stale""#, "text").await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.text().await.unwrap(), "<b>text</b>");
    // The handler's own tag is kept and compared whole (it holds a comma).
    let own = conditional(r#""v1""#, "own-tag").await.unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.headers()["etag"], r#""v1,a""#);
    assert_eq!(
        conditional(r#""v1,a""#, "own-tag").await.unwrap().status(),
        304
    );
    // Only a GET or HEAD is answered from the client's copy.
    let post = c
        .post(server.url("/api/send?v=text"))
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert_eq!(post.text().await.unwrap(), "<b>text</b>");

    // Text is sent as UTF-8 and its type says so, as Vercel's send() sets it,
    // replacing a charset the handler named.
    let csv = send("csv").await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.bytes().await.unwrap().as_ref(), "café,1\n".as_bytes());
    // A `;` inside a quoted parameter does not split it.
    let quoted = send("quoted").await.unwrap();
    assert_eq!(
        quoted.headers()["content-type"],
        r#"multipart/mixed; boundary="a;charset=x"; charset=utf-8"#
    );
    // res.json(undefined) (a query with no row) is an empty JSON answer, not a 500.
    let no_row = send("no-row").await.unwrap();
    assert_eq!(no_row.status(), 200);
    assert_eq!(
        no_row.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(no_row.text().await.unwrap(), "");
    // A GET whose Content-Type describes a body has it parsed, as there.
    let body = c
        .get(server.url("/api/send?v=body"))
        .header("content-type", "application/json")
        .body(r#"{"q":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(body.text().await.unwrap(), r#"{"body":{"q":1}}"#);
}

#[tokio::test]
async fn a_node_handler_can_read_the_raw_body_as_a_stream_beside_req_body() {
    let server = server(&["--timeout", "5s"]);
    let c = client();
    let json = send_json(
        c.post(server.url("/api/raw-body"))
            .json(&serde_json::json!({ "event": "paid" })),
    )
    .await;
    assert_eq!(json["length"], 16);
    assert_eq!(json["body"]["event"], "paid");
    // Large enough to arrive in many pieces, and sent both ways a client may.
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let adler32 = {
        let (mut a, mut b) = (1u64, 0u64);
        for byte in &bytes {
            a = (a + u64::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        b * 65536 + a
    };
    for path in ["/api/raw-body", "/api/raw-body?iter"] {
        let sized = send_json(
            c.post(server.url(path))
                .header("Content-Type", "application/octet-stream")
                .body(bytes.clone()),
        )
        .await;
        assert_eq!(sized["length"], 3_000_000, "{path}");
        assert_eq!(sized["adler32"], adler32, "{path}");
        assert_eq!(sized["body"], "buffer:3000000", "{path}");
        let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(
            bytes
                .chunks(100_000)
                .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
                .collect::<Vec<_>>(),
        ));
        let streamed = send_json(
            c.post(server.url(path))
                .header("Content-Type", "application/octet-stream")
                .body(chunked),
        )
        .await;
        assert_eq!(streamed["adler32"], adler32, "{path}");
    }
    // An empty POST still ends.
    let empty = send_json(c.post(server.url("/api/raw-body"))).await;
    assert_eq!(empty["length"], 0);
}

#[tokio::test]
async fn a_thrown_error_is_a_500_and_the_worker_survives() {
    let server = server(&[]);
    let (_, before) = json(&server, "/api/web").await;
    let thrown = client()
        .get(server.url("/api/throws"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(thrown.status(), 500);
    let body: serde_json::Value = thrown.json().await.unwrap();
    assert_eq!(body["error"]["status"], 500);
    assert!(
        !body.to_string().contains("boom"),
        "the stack goes to the log, not the client"
    );
    assert!(server.wait_for_log("boom from the handler", Duration::from_secs(3)));
    let again = client()
        .get(server.url("/api/throws"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 500);
    let (_, after) = json(&server, "/api/web").await;
    assert_eq!(before["pid"], after["pid"]);
}

#[tokio::test]
async fn an_error_after_the_answer_began_cuts_it_short_and_the_worker_serves_on() {
    let server = server(&[]);
    let mut pids = Vec::new();
    // More than the crash limit (5): each used to stop the worker as crashed,
    // and the route went to the crash-loop 503.
    for round in 0..7 {
        let path = if round % 2 == 0 {
            "/api/throws-mid-body"
        } else {
            "/api/throws-mid-body?later=1"
        };
        let (status, body, cut_off) = common::read_as_far_as_it_goes(&server, path).await;
        assert_eq!(status, 200, "round {round}: {body}");
        assert!(
            cut_off,
            "round {round}: the answer ended as if whole: {body}"
        );
        // What the handler wrote before it failed still arrives, even when it
        // failed before its write had left the process.
        let pid = body
            .strip_prefix("partial ")
            .unwrap_or_else(|| panic!("round {round}: {body:?}"))
            .trim()
            .to_owned();
        pids.push(pid);
    }
    assert!(
        pids.windows(2).all(|pair| pair[0] == pair[1]),
        "the worker was replaced: {pids:?}"
    );
    assert!(server.wait_for_log("failed mid-body", Duration::from_secs(3)));
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
}

#[tokio::test]
async fn compiled_wrapped_and_response_returning_default_exports_run() {
    let server = server(&[]);
    // tsc's and Babel's CommonJS: the handler sits under `default`.
    let (status, compiled) = json(&server, "/api/compiled").await;
    assert_eq!(
        (status, &compiled["compiled"]),
        (200, &true.into()),
        "{compiled}"
    );
    // A wrapper declares no parameters: still (req, res), with the helpers.
    let (status, wrapped) = json(&server, "/api/wrapped?a=1").await;
    assert_eq!(status, 201, "{wrapped}");
    assert_eq!(wrapped["query"]["a"], "1");
    // (request, { params }) returning a Response: the Response is sent.
    let (status, returned) = json(&server, "/api/returns-response").await;
    assert_eq!(
        (status, &returned["returned"]),
        (200, &true.into()),
        "{returned}"
    );
}

#[tokio::test]
async fn a_handler_runs_in_the_project_root_as_under_vercel_dev() {
    let server = server(&[]);
    let (status, answer) = json(&server, "/api/cwd").await;
    assert_eq!(status, 200);
    let root = fixtures("node").parent().unwrap().canonicalize().unwrap();
    assert_eq!(answer["cwd"], root.to_str().unwrap(), "DIR's parent");
}

#[tokio::test]
async fn a_module_that_cannot_load_says_so_and_the_log_says_where() {
    let server = server(&[]);
    for _ in 0..2 {
        let failed = client()
            .get(server.url("/api/broken"))
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), 500);
        let text = failed.text().await.unwrap();
        assert!(text.contains("could not be loaded (SyntaxError)"), "{text}");
    }
    // An ES module's SyntaxError carries no location of its own.
    assert!(
        server.wait_for_log("broken.mjs:2", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert_eq!(server.log().matches("cannot load").count(), 1, "once");
}

/// A `.js` handler in ES module syntax with no `"type": "module"` beside it
/// (Node detects the syntax): `node --check` passes such a file without a
/// word on Node 20, so the log said nothing of where the error was.
#[tokio::test]
async fn a_js_module_with_a_syntax_error_is_located_too() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    std::fs::create_dir(&api).unwrap();
    std::fs::write(
        api.join("typo.js"),
        "export default function handler(req, res) {\n  const a = 1;\n  res.send(\"x\";\n}\n",
    )
    .unwrap();
    let server = TestServer::start(&api, &[]);
    let failed = client().get(server.url("/api/typo")).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    assert!(
        server.wait_for_log("typo.js:3", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("[stdin]"), "{}", server.log());
}

/// A CGI script in JavaScript that lost its execute bit (a copy, an unzip)
/// is served as a handler module, and exports nothing: the 500 says to
/// `chmod +x` it, as the opposite mistake's does to `chmod -x`.
#[tokio::test]
async fn a_cgi_script_without_its_execute_bit_is_told_to_get_it_back() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    std::fs::create_dir(&api).unwrap();
    std::fs::write(
        api.join("time.js"),
        "#!/usr/bin/env node\nprocess.stdout.write('Content-Type: text/plain\\n\\nnow\\n');\n",
    )
    .unwrap();
    let server = TestServer::start(&api, &[]);
    let failed = client().get(server.url("/api/time")).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    let text = failed.text().await.unwrap();
    assert!(text.contains("exports no handler"), "{text}");
    assert!(text.contains("`chmod +x time.js`"), "{text}");
}

#[tokio::test]
async fn stray_errors_are_logged_and_the_worker_serves_on() {
    let server = server(&[]);
    let mut pids = std::collections::HashSet::new();
    for _ in 0..6 {
        let (status, answer) = json(&server, "/api/stray-errors").await;
        assert_eq!(status, 200, "{answer}");
        pids.insert(answer["pid"].clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pids.len(), 1, "the worker was replaced: {}", server.log());
    assert!(server.wait_for_log("stray rejection", Duration::from_secs(3)));
    assert!(server.wait_for_log("stray throw", Duration::from_secs(3)));
    assert!(!server.log().contains("crashed"), "{}", server.log());
}

#[tokio::test]
async fn an_error_page_carries_none_of_the_handlers_headers() {
    let server = server(&[]);
    let failed = client()
        .get(server.url("/api/throws-after-headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    assert!(failed.headers().get("set-cookie").is_none());
    assert!(failed.headers().get("cache-control").is_none());
    let text = failed.text().await.unwrap();
    assert!(text.contains("request id"), "{text}");
}

#[tokio::test]
async fn a_streamed_response_arrives_as_it_is_produced() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/stream"))
        .send()
        .await
        .unwrap();
    let streamed = common::read_streamed(response).await;
    assert_eq!(streamed.first, b"first\n");
    assert_eq!(streamed.rest, b"second\n");
    assert!(
        streamed.spread >= Duration::from_millis(400),
        "{:?}",
        streamed.spread
    );
}

/// A client that leaves a streamed Web `Response` cancels its stream and
/// aborts its request's signal: an SSE stream's timer ran on in the warm
/// worker for its whole life, one more per client that came and went.
/// Multi-threaded: the client's connection task must run to close the
/// connection while this test blocks on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_a_web_stream_cancels_it() {
    let server = server(&[]);
    let mut response = client().get(server.url("/api/ticks")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: tick"), "{first:?}");
    drop(response);
    assert!(
        server.wait_for_log("stream cancelled", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert!(
        server.wait_for_log("signal aborted", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // A HEAD answer has no body: the stream is cancelled at once.
    let head = client()
        .head(server.url("/api/ticks"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        server.wait_for_log_count("stream cancelled", 2, Duration::from_secs(10)),
        "{}",
        server.log()
    );
    // A stream that errors as the client leaves is the leaving, not a
    // handler's failure with a stack in the log.
    let mut tied = client()
        .get(server.url("/api/ticks?m=tied"))
        .send()
        .await
        .unwrap();
    tied.chunk().await.unwrap().unwrap();
    drop(tied);
    assert!(
        server.wait_for_log_count("signal aborted", 2, Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let settled = server.wait_for_log("tied stream ended", Duration::from_secs(1));
    assert!(!settled, "{}", server.log());
    // The adapter's worker stopped the work itself and was kept: no kill to count.
    assert!(
        server.wait_for_log("client_gone=true", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert_eq!(
        common::metric_sum(&metrics, "watchdog_kills_total"),
        0.0,
        "{metrics}"
    );
}

/// A handler that ends its process (`process.exit(3)`) is told as that, with
/// the exit, and a hint that fits a handler module: it was "broke off the
/// request: connection closed", with a hint about $PORT and the Runtime API.
#[tokio::test]
async fn a_handler_that_exits_its_process_is_named_as_such() {
    let server = server(&[]);
    let answered = client()
        .get(server.url("/api/exits?code=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 502);
    let text = answered.text().await.unwrap();
    assert!(
        text.contains("the handler module's process ended before it answered (exit 3)")
            && text.contains("process.exit()"),
        "{text}"
    );
    let next = client().get(server.url("/api/exits")).send().await.unwrap();
    assert_eq!(next.text().await.unwrap(), "still here\n");
}

/// A client that leaves before its answer keeps the handler module's worker,
/// and its module state: the request's signal aborts there, as it does for a
/// client that leaves mid-answer. The worker was stopped, as an HTTP worker
/// is, and the next request met a cold start with its state gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_its_answer_keeps_the_modules_worker() {
    let server = server(&[]);
    let (status, first) = json(&server, "/api/patient").await;
    assert_eq!(status, 200);
    let left = tokio::time::timeout(
        Duration::from_millis(300),
        client().get(server.url("/api/patient?wait")).send(),
    )
    .await;
    assert!(left.is_err(), "answered before the client left: {left:?}");
    assert!(
        server.wait_for_log("patient 2 aborted", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let (status, after) = json(&server, "/api/patient").await;
    assert_eq!(status, 200);
    assert_eq!(after["pid"], first["pid"], "{}", server.log());
    assert_eq!(after["served"], 3, "module state kept");
    assert!(
        server.wait_for_log("client_gone=true", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert_eq!(
        common::metric_sum(&metrics, "watchdog_kills_total"),
        0.0,
        "{metrics}"
    );
}

/// A Web stream is pulled only as fast as the client reads: one that stops
/// reading holds it back at what the sockets between them buffer (well under
/// half of its 256 MiB), where the worker made and kept every chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_stream_waits_for_a_client_that_reads_slowly() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/ticks?m=big"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        server.wait_for_log("pulled 10", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    // Until the count stops growing, or passes what buffers could hold.
    let pulled = |log: &str| {
        (log.lines())
            .filter_map(|line| line.split("pulled ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    };
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = pulled(&server.log());
        if now == last || now >= 2000 {
            break;
        }
        last = now;
    }
    let log = server.log();
    assert!(pulled(&log) < 2000, "{log}");
    drop(response);
}

#[tokio::test]
async fn console_output_is_logged_with_the_request_id_and_hangs_time_out() {
    let server = server(&["--timeout", "1500ms"]);
    let logged = client()
        .get(server.url("/api/logs"))
        .header("X-Request-Id", "node-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(logged.text().await.unwrap(), "logged");
    // The request's id in the line's own field (filters find it), console.log at
    // INFO and console.error at WARN.
    let out = server.log_line("hello from console.log", Duration::from_secs(3));
    assert!(
        out.contains(" INFO ") && out.contains("request_id=node-log-1"),
        "{out}"
    );
    let err = server.log_line("and from console.error", Duration::from_secs(3));
    assert!(
        err.contains(" WARN ") && err.contains("request_id=node-log-1"),
        "{err}"
    );
    let started = Instant::now();
    let hung = client().get(server.url("/api/hang")).send().await.unwrap();
    assert_eq!(hung.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn an_edited_module_is_picked_up() {
    let tmp = copy_fixture("node");
    let api = tmp.path().join("api");
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    assert_eq!(
        client()
            .post(server.url("/api/fetch"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "from fetch POST"
    );
    std::fs::write(
        api.join("fetch.mjs"),
        "export default { fetch() { return new Response('edited'); } };\n",
    )
    .unwrap();
    common::wait_for_text(server.url("/api/fetch"), "edited", Duration::from_secs(3)).await;
}

/// The usual first project: one handler module, nothing else to import.
#[tokio::test]
async fn an_edited_module_alone_in_its_folder_is_picked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let api = tmp.path().join("api");
    std::fs::create_dir(&api).unwrap();
    let write = |version: u32| {
        std::fs::write(
            api.join("only.mjs"),
            format!("export default function handler(req, res) {{ res.send('v{version}'); }}\n"),
        )
        .unwrap();
    };
    write(1);
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    assert_eq!(common::get_text(server.url("/api/only")).await, "v1");
    write(2);
    common::wait_for_text(server.url("/api/only"), "v2", Duration::from_secs(3)).await;
}

/// Vercel's layout: handlers in `api/`, shared code in `lib/` beside it, one
/// `package.json` at the root. An edit to `lib/` is picked up as an edit to a
/// handler is (the warm worker had it loaded), including in a folder made
/// after watchdog started.
#[tokio::test]
async fn an_edit_to_the_projects_code_beside_dir_is_picked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (api, lib) = (tmp.path().join("api"), tmp.path().join("lib"));
    common::write_files(
        tmp.path(),
        &[
            ("package.json", r#"{ "name": "app" }"#),
            ("lib/message.mjs", "export const message = 'v1';\n"),
            (
                "api/hello.mjs",
                "import { message } from '../lib/message.mjs';\n\
                 export default function handler(req, res) { res.send(message); }\n",
            ),
        ],
    );
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    let answers = |expected: &'static str| {
        common::wait_for_text(server.url("/api/hello"), expected, Duration::from_secs(5))
    };
    answers("v1").await;
    std::fs::write(lib.join("message.mjs"), "export const message = 'v2';\n").unwrap();
    answers("v2").await;
    // A folder made since start.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("text.mjs"), "export const text = 'v3';\n").unwrap();
    std::fs::write(
        lib.join("message.mjs"),
        "export { text as message } from '../shared/text.mjs';\n",
    )
    .unwrap();
    answers("v3").await;
    std::fs::write(shared.join("text.mjs"), "export const text = 'v4';\n").unwrap();
    answers("v4").await;
    // The folder deleted and made again (`rm -rf shared && cp -r ...`) lost its
    // watch with the old one; the new one is watched.
    std::fs::remove_dir_all(&shared).unwrap();
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("text.mjs"), "export const text = 'v5';\n").unwrap();
    answers("v5").await;
    std::fs::write(shared.join("text.mjs"), "export const text = 'v6';\n").unwrap();
    answers("v6").await;
    // A file a function writes beside DIR (a lowdb `db.json`, a log) is not
    // code: it does not even make watchdog look again.
    let reloads = server.log().matches("routes reloaded").count();
    std::fs::write(tmp.path().join("db.json"), "[]").unwrap();
    std::fs::write(lib.join("app.log"), "line\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.log().matches("routes reloaded").count(), reloads);
}

#[tokio::test]
async fn typescript_needs_a_node_that_strips_types() {
    let server = server(&[]);
    let version = std::process::Command::new("node")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout)
        .trim()
        .trim_start_matches('v')
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let response = client().get(server.url("/api/typed")).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    if major > 23 || (major == 23 && minor >= 6) {
        assert_eq!(text, "typed");
    } else {
        assert_eq!(status, 500, "{text}");
        assert!(
            text.contains("Node 23.6"),
            "the message must say which Node is needed: {text}"
        );
    }
}

/// An Express app written for Vercel that also calls `app.listen($PORT)` (to
/// run by itself) runs unchanged: its server listens on a loopback port of its
/// own, not on the adapter's port (EADDRINUSE) or any fixed port on every
/// interface, and requests reach it through its export.
#[tokio::test]
async fn a_module_that_listens_by_itself_is_served_through_its_export() {
    let tmp = tempfile::tempdir().unwrap();
    let api = tmp.path().join("api");
    std::fs::create_dir(&api).unwrap();
    std::fs::write(
        api.join("app.js"),
        "const http = require('http');\n\
         const app = (req, res) => {\n\
           const send = () => res.json({ own: server.address(), port: process.env.PORT });\n\
           server.listening ? send() : server.once('listening', send);\n\
         };\n\
         const server = http.createServer(app);\n\
         server.listen(process.env.PORT || 3000);\n\
         http.createServer(app).listen({ port: 3000, backlog: 8 }, () => {});\n\
         http.createServer(app).listen(() => { /* callback only */ });\n\
         module.exports = app;\n",
    )
    .unwrap();
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    let answer = common::send_json(client().get(server.url("/api/app"))).await;
    assert_eq!(answer["own"]["address"], "127.0.0.1", "{answer}");
    let own_port = answer["own"]["port"].as_u64().unwrap();
    let adapter_port: u64 = answer["port"].as_str().unwrap().parse().unwrap();
    assert_ne!(own_port, adapter_port, "{answer}");
    assert!(!server.log().contains("EADDRINUSE"), "{}", server.log());
    assert!(
        server.wait_for_log("listen() was given 127.0.0.1:", Duration::from_secs(5))
            && server.wait_for_log("listen(3000) was given 127.0.0.1:", Duration::from_secs(5)),
        "each move is logged, naming what was asked: {}",
        server.log()
    );
    assert!(!server.log().contains("callback only"), "{}", server.log());
}

/// Vercel's own template, `export default function handler` in `api/x.js`, in
/// a package whose package.json says "type": "commonjs" (as `npm init -y`
/// writes it): Vercel compiles it to CommonJS; here it loads as an ES module,
/// and so do the `.js` helpers written as ES modules that it (or an `.mjs`
/// handler) imports, while a CommonJS helper stays CommonJS.
#[tokio::test]
async fn es_module_files_in_a_commonjs_package_run() {
    let tmp = tempfile::tempdir().unwrap();
    let api = tmp.path().join("api");
    common::write_files(
        tmp.path(),
        &[
            ("package.json", r#"{ "name": "app", "type": "commonjs" }"#),
            ("api/_helper.cjs", "exports.helper = () => 'helped';\n"),
            ("api/_old.js", "module.exports = { twice: (s) => s + s };\n"),
            (
                "api/_shout.js",
                "export const shout = (s) => s.toUpperCase();\n",
            ),
            (
                "api/hello.js",
                "import { helper } from './_helper.cjs';\n\
                 import old from './_old.js';\n\
                 import { shout } from './_shout.js';\n\
                 export default function handler(req, res) { res.send(`ok ${helper()} ${old.twice('x')} ${shout('y')}`); }\n",
            ),
            (
                "api/old.js",
                "const { shout } = require('./_shout.js');\n\
                 module.exports = (req, res) => res.send(shout('old'));\n",
            ),
            (
                "api/other.mjs",
                "import { shout } from './_shout.js';\n\
                 export default function handler(req, res) { res.send(shout('mjs')); }\n",
            ),
            // What Vercel's compile to CommonJS allows in such a file: imports
            // resolved as `require` resolves them, `require`, `__dirname`.
            ("lib/util.js", "export const greet = (n) => `hi ${n}`;\n"),
            ("lib/parts/index.js", "export const part = 'index';\n"),
            (
                "api/compiled.js",
                "import { greet } from '../lib/util';\n\
                 import { part } from '../lib/parts';\n\
                 const path = require('path');\n\
                 export default function handler(req, res) {\n\
                   res.send(`${greet('ada')} ${part} ${path.basename(__dirname)} ${path.basename(__filename)}`);\n\
                 }\n",
            ),
            // One that declares them itself, as ES modules do, keeps its own.
            (
                "api/own-names.js",
                "import { fileURLToPath } from 'url';\n\
                 import { createRequire } from 'module';\n\
                 import path from 'path';\n\
                 const require = createRequire(import.meta.url);\n\
                 const __dirname = path.dirname(fileURLToPath(import.meta.url)) + '!';\n\
                 export default function handler(req, res) { res.send(path.basename(__dirname) + typeof require); }\n",
            ),
        ],
    );
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    let response = client().get(server.url("/api/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok helped xx Y");
    let response = client().get(server.url("/api/other")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "MJS");
    let text_of = |path: &'static str| common::get_text(server.url(path));
    assert_eq!(
        text_of("/api/compiled").await,
        "hi ada index api compiled.js"
    );
    assert_eq!(text_of("/api/own-names").await, "api!function");
    // A CommonJS handler that `require`s such a helper is not loaded again as
    // an ES module (no hook reaches `require`): its own error is logged.
    for _ in 0..2 {
        let response = client().get(server.url("/api/old")).send().await.unwrap();
        assert_eq!(response.status(), 500);
    }
    let log = server.log_line("cannot load", Duration::from_secs(5));
    assert!(log.contains("old.js"), "{}", server.log());
    assert!(
        server.log().contains("Unexpected token 'export'"),
        "{}",
        server.log()
    );
    assert!(
        !server.log().contains("require is not defined"),
        "{}",
        server.log()
    );
}

/// A Web handler that answers (or throws) before reading a large upload leaves
/// the rest of the body unread; the worker drops it, as Node's own server does
/// for a request nobody read, and its connection serves the next request.
#[tokio::test]
async fn a_body_the_handler_did_not_read_does_not_stall_the_next_request() {
    // With the body left in the worker's socket, the next request waited to
    // this timeout: a 504, and the worker was killed for it.
    let server = server(&["--timeout", "5s"]);
    let upload = vec![b'x'; 2 * 1024 * 1024];
    let send = |method: reqwest::Method, token: &str| {
        client()
            .request(method, server.url("/api/early-answer"))
            .header("Authorization", format!("Bearer {token}"))
            .body(upload.clone())
            .send()
    };
    for round in 0..4 {
        let refused = send(reqwest::Method::POST, "wrong").await.unwrap();
        assert_eq!(refused.status(), 401, "round {round}");
        assert_eq!(refused.text().await.unwrap(), "unauthorized");
        let thrown = send(reqwest::Method::PUT, "ok").await.unwrap();
        assert_eq!(thrown.status(), 500, "round {round}");
    }
    let accepted = send(reqwest::Method::POST, "ok").await.unwrap();
    assert_eq!(accepted.status(), 200);
    // A body the handler goes on reading after its answer is left to it, whole.
    let later = send(reqwest::Method::PATCH, "ok").await.unwrap();
    assert_eq!(later.status(), 202);
    assert!(server.wait_for_log(
        &format!("read in the background: {} bytes", upload.len()),
        Duration::from_secs(5)
    ));
    assert!(
        !server.log().contains("ran past its time"),
        "{}",
        server.log()
    );
}

/// A section that gives handler modules `protocol = "lambda"` (a `"**"` one
/// in a project that mixes Lambda binaries and modules) cannot apply: the
/// adapter serves HTTP. They run with it, and the log says so; the adapter
/// crashed at start, and every request was a 502.
#[tokio::test]
async fn a_lambda_protocol_given_to_handler_modules_is_warned_of_and_they_still_run() {
    let tmp = copy_fixture("node");
    std::fs::write(
        tmp.path().join("watchdog.toml"),
        "[functions.\"**\"]\nwarm = { protocol = \"lambda\" }\noutput = \"raw\"\n",
    )
    .unwrap();
    let server = TestServer::start(&tmp.path().join("api"), &[]);
    let response = client()
        .get(server.url("/api/send?v=number"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "42");
    let log = server.log();
    assert!(
        log.contains("protocol = \"lambda\" does not apply to handler modules"),
        "{log}"
    );
    // `output = "raw"` shapes a CGI program's answer: warm functions ignore it.
    assert!(
        log.contains("settings that do nothing for functions that run warm"),
        "{log}"
    );
    assert!(log.contains("keys=output"), "{log}");
}

/// A request head past Node's own 16 KiB default (a large cookie beside a
/// token) reaches a handler module, as it reaches CGI functions and Lambda
/// workers: Node answered a bare 431 of its own, with no message.
#[tokio::test]
async fn a_request_head_past_nodes_default_limit_reaches_the_handler() {
    let server = server(&[]);
    let big = "a".repeat(9000);
    let response = client()
        .get(server.url("/api/send?v=number"))
        .header("Cookie", format!("s={big}"))
        .header("Authorization", format!("Bearer {big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "42");
}

/// A temporary folder with `mode`.
fn folder_with_mode(mode: u32) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    tmp
}

/// The node fixtures served with `tmpdir` as watchdog's TMPDIR.
fn server_with_tmpdir(tmpdir: &std::path::Path) -> TestServer {
    TestServer::start_with(&fixtures("node"), &["--prefix", "/api"], |command| {
        command.env("TMPDIR", tmpdir);
    })
}

/// What a handler module answers when the adapter may not be written: a 500
/// and its text.
async fn refused_module(server: &TestServer) -> String {
    let response = client().get(server.url("/api/web")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    response.text().await.unwrap()
}

/// Only root can give a folder to another user, so only root can set the
/// traps these tests look at: true (and said) when the test cannot run.
fn skipped_without_root() -> bool {
    let skipped = !nix::unistd::geteuid().is_root();
    if skipped {
        eprintln!("skipped: needs root to make a folder owned by someone else");
    }
    skipped
}

#[tokio::test]
async fn an_adapter_folder_another_user_made_first_is_left_alone() {
    // Only root can give a folder to another user, so only root can set the
    // trap this test looks at.
    if skipped_without_root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = folder_with_mode(0o1777);
    // Made first by `nobody`, under the name watchdog would pick.
    let trap = tmp
        .path()
        .join(format!("watchdog-node-{}", nix::unistd::getuid()));
    std::fs::create_dir(&trap).unwrap();
    std::fs::set_permissions(&trap, std::fs::Permissions::from_mode(0o777)).unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(&trap, Some(nobody), None).unwrap();
    let server = server_with_tmpdir(tmp.path());
    let (status, answer) = json(&server, "/api/web?name=Ada").await;
    assert_eq!((status, &answer["name"]), (200, &serde_json::json!("Ada")));
    let planted: Vec<_> = std::fs::read_dir(&trap).unwrap().collect();
    assert!(
        planted.is_empty(),
        "the adapter went into a folder another user can write to: {planted:?}"
    );
    assert!(
        server.log().contains("usual folder is not used"),
        "{}",
        server.log()
    );
}

/// In a TMPDIR others may write to without the sticky bit, any user could
/// rename the adapter's folder aside and put their own in its place: the
/// module is refused with what to do, rather than run from there.
#[tokio::test]
async fn a_tmpdir_anyone_may_rename_in_is_not_used_for_the_adapter() {
    let tmp = folder_with_mode(0o777);
    let server = server_with_tmpdir(tmp.path());
    let text = refused_module(&server).await;
    assert!(
        text.contains("is not sticky") && text.contains("set TMPDIR"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// Nor one inside a folder another user owns: they could rename the
/// adapter's folder (or TMPDIR itself) aside after the check and put their
/// own in its place, for every worker started later (a re-probe did, and had
/// its adapter run as root).
#[tokio::test]
async fn a_tmpdir_below_another_users_folder_is_not_used_for_the_adapter() {
    if skipped_without_root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = folder_with_mode(0o755);
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let ours = theirs.join("tmp");
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = server_with_tmpdir(&ours);
    let text = refused_module(&server).await;
    assert!(text.contains("belongs to uid 65534"), "{text}");
    assert_eq!(std::fs::read_dir(&ours).unwrap().count(), 0);
}
