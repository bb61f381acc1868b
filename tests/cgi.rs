//! CGI invocation (CONTRACT §3) against the real binary over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, alive, client, fixtures, gone, raw_request};

fn server(flags: &[&str]) -> TestServer {
    let mut all = vec!["--prefix", "/api"];
    all.extend_from_slice(flags);
    TestServer::start(&fixtures("cgi"), &all)
}

use common::env_map;

#[tokio::test]
async fn environment_is_clean_and_complete() {
    let server = TestServer::start_with(
        &fixtures("cgi"),
        &[
            "--prefix",
            "/api",
            "--env",
            "STAGE=dev",
            "--pass-env",
            "KEEP_ME",
            // A user's variables cannot override the meta-variables, whether
            // they are the same for every request or the request's own.
            "--env",
            "GATEWAY_INTERFACE=spoofed",
            "--env",
            "DOCUMENT_ROOT=/spoofed",
            "--env",
            "REQUEST_METHOD=spoofed",
            // Nor reach a request without a body as its CONTENT_LENGTH.
            "--env",
            "CONTENT_LENGTH=100",
        ],
        |command| {
            command
                .env("WATCHDOG_TEST_SECRET", "leak")
                .env("KEEP_ME", "kept")
                .env("AWS_SECRET_ACCESS_KEY", "x");
        },
    );
    let response = client()
        .post(server.url("/api/env?b=2&a=1"))
        .header("Proxy", "http://evil.example:8080")
        .header("X-Forwarded-For", "1.2.3.4")
        .header("X_Forwarded_For", "spoofed")
        .header("Authorization", "Bearer token")
        .header("Cookie", "a=1")
        .header("Content-Type", "text/plain")
        .header("X-Request-Id", "req-123")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let body = response.text().await.unwrap();
    for name in [
        "GATEWAY_INTERFACE",
        "DOCUMENT_ROOT",
        "REQUEST_METHOD",
        "PATH",
    ] {
        let entries = body
            .lines()
            .filter(|line| line.starts_with(&format!("{name}=")))
            .count();
        assert_eq!(entries, 1, "{name} is set {entries} times:\n{body}");
    }
    let env = env_map(&body);
    let expect = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "POST"),
        ("QUERY_STRING", "b=2&a=1"),
        ("REQUEST_URI", "/api/env?b=2&a=1"),
        ("SCRIPT_NAME", "/api/env"),
        ("CONTENT_TYPE", "text/plain"),
        ("CONTENT_LENGTH", "2"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REQUEST_SCHEME", "http"),
        ("REDIRECT_STATUS", "200"),
        ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
        ("HTTP_AUTHORIZATION", "Bearer token"),
        ("HTTP_COOKIE", "a=1"),
        ("WATCHDOG_REQUEST_ID", "req-123"),
        ("STAGE", "dev"),
        ("KEEP_ME", "kept"),
    ];
    for (name, value) in expect {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert_eq!(env["SERVER_PORT"], server.addr.port().to_string());
    assert!(env["SERVER_SOFTWARE"].starts_with("watchdog/"));
    let root = fixtures("cgi").canonicalize().unwrap();
    assert_eq!(env["DOCUMENT_ROOT"], root.display().to_string());
    assert_eq!(
        env["SCRIPT_FILENAME"],
        root.join("env.sh").display().to_string()
    );
    assert_eq!(
        env["PWD"],
        root.display().to_string(),
        "working directory is the function's folder"
    );
    assert!(env.contains_key("REMOTE_PORT") && env.contains_key("PATH"));
    let deadline: u128 = env["WATCHDOG_DEADLINE_MS"].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        deadline > now && deadline <= now + 31_000,
        "deadline {deadline} vs now {now}"
    );
    for absent in [
        "HTTP_PROXY",
        "WATCHDOG_TEST_SECRET",
        "AWS_SECRET_ACCESS_KEY",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
    ] {
        assert!(
            !env.contains_key(absent),
            "{absent} must not reach the function"
        );
    }
    assert_eq!(env.keys().filter(|k| k.contains("FORWARDED")).count(), 1);
    let without_body = env_map(&common::get_text(server.url("/api/env")).await);
    assert_eq!(
        without_body.get("REQUEST_METHOD").map(String::as_str),
        Some("GET")
    );
    assert!(
        !without_body.contains_key("CONTENT_LENGTH"),
        "{without_body:?}"
    );
    // No PATH_TRANSLATED for a path after the script: php-cgi with
    // `cgi.fix_pathinfo=0` runs the file it names (`page.php/_secret.php`).
    let with_path = env_map(&common::get_text(server.url("/api/env.sh/_x/a.php")).await);
    assert_eq!(with_path["PATH_INFO"], "/_x/a.php");
    assert!(!with_path.contains_key("PATH_TRANSLATED"), "{with_path:?}");
    server.assert_no_children();
}

/// A descriptor watchdog inherited without close-on-exec (from a supervisor, a
/// shell) never reaches a function: it gets its three standard streams only.
#[tokio::test]
async fn a_function_inherits_only_its_standard_streams() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    const INHERITED: i32 = 47;
    let file = std::fs::File::open("/dev/null").unwrap();
    let raw = file.as_raw_fd();
    let inherit = |command: &mut std::process::Command| {
        #[allow(unsafe_code)]
        // SAFETY: dup2 is async-signal-safe; the copy it makes at INHERITED has
        // no close-on-exec flag, so watchdog inherits it.
        unsafe {
            command.pre_exec(move || {
                if nix::libc::dup2(raw, INHERITED) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    // The lean CGI spawner, and std's Command (as for limits, --user, warm
    // workers): a CPU limit takes the latter.
    let limited = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(limited.path().join("api")).unwrap();
    let script = limited.path().join("api/fds.sh");
    std::fs::copy(fixtures("cgi").join("fds.sh"), &script).unwrap();
    std::fs::write(
        limited.path().join("watchdog.toml"),
        "[functions.\"fds.sh\"]\ncpu_time = \"10s\"\n",
    )
    .unwrap();
    for dir in [fixtures("cgi"), limited.path().join("api")] {
        let server = TestServer::start_with(&dir, &["--prefix", "/api"], inherit);
        let in_watchdog = format!("/proc/{}/fd/{INHERITED}", server.pid());
        assert!(
            std::path::Path::new(&in_watchdog).exists(),
            "watchdog holds it"
        );
        for _ in 0..3 {
            let body = common::get_text(server.url("/api/fds")).await;
            let mut fds: Vec<i32> = body.lines().map(|l| l.parse().unwrap()).collect();
            fds.sort_unstable();
            assert!(fds.starts_with(&[0, 1, 2]), "{dir:?}: {fds:?}");
            assert!(!fds.contains(&INHERITED), "{dir:?}: {fds:?}");
        }
    }
    drop(file);
}

#[tokio::test]
async fn binary_post_of_5_mb_is_echoed_byte_exact() {
    let server = server(&[]);
    let body: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let response = client()
        .post(server.url("/api/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let got = response.bytes().await.unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got[..] == body[..], "echoed bytes differ");
    server.assert_no_children();
}

#[tokio::test]
async fn chunked_upload_arrives_with_content_length() {
    let server = server(&[]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b'x'; 10_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client()
        .post(server.url("/api/body-info"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("CONTENT_LENGTH=400000\n"), "{text}");
    assert!(text.contains("received=400000\n"), "{text}");
    // Read de-chunked, so not told `chunked` (werkzeug would then ignore the
    // length and read nothing).
    assert!(text.contains("HTTP_TRANSFER_ENCODING=unset\n"), "{text}");
}

#[tokio::test]
async fn body_limit_answers_413() {
    let server = server(&["--max-body", "1KiB"]);
    let response = client()
        .post(server.url("/api/body-info"))
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'x'; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client()
        .post(server.url("/api/body-info"))
        .body(body)
        .send()
        .await;
    // The server may close the connection as soon as it has answered.
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }
    let ok = client()
        .post(server.url("/api/body-info"))
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn repeated_set_cookie_headers_are_kept() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/cookies"))
        .send()
        .await
        .unwrap();
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);
}

#[tokio::test]
async fn a_function_that_never_reads_a_20_mb_body_does_not_hang() {
    let server = server(&[]);
    let started = Instant::now();
    let response = client()
        .post(server.url("/api/hello"))
        .body(vec![7u8; 20 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The connection stays usable.
    let again = client().get(server.url("/api/hello")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    server.assert_no_children();
}

#[tokio::test]
async fn output_reaches_the_client_before_the_function_exits() {
    let server = server(&[]);
    let started = Instant::now();
    let response = client()
        .get(server.url("/api/stream"))
        .send()
        .await
        .unwrap();
    let streamed = common::read_streamed(response).await;
    assert_eq!(streamed.first, b"first\n");
    assert_eq!(streamed.rest, b"second\n");
    assert!(
        streamed.spread >= Duration::from_millis(800),
        "the second piece came {:?} after the first, started {:?} ago",
        streamed.spread,
        started.elapsed()
    );
}

#[tokio::test]
async fn timeout_kills_the_group_and_answers_504() {
    let server = server(&["--timeout", "1s", "--kill-grace", "1s"]);
    let started = Instant::now();
    let response = client()
        .get(server.url("/api/sleepy"))
        .header("X-Request-Id", "sleepy-1")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}"
    );
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"]["status"], 504);
    assert_eq!(json["error"]["request_id"], "sleepy-1");
    let pids = server.pids("sleepy-sleepy-1");
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(
            common::wait_until(Duration::from_secs(2), || gone(pid)),
            "pid {pid} survived the timeout"
        );
    }
    assert!(server.wait_for_log("timed_out=true", Duration::from_secs(2)));
    server.assert_no_children();
}

#[tokio::test]
async fn a_background_child_holding_stdout_does_not_hold_the_request() {
    let server = server(&[]);
    let started = Instant::now();
    let response = client()
        .get(server.url("/api/held-stdout"))
        .header("X-Request-Id", "held-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = server.pids("held-held-1")[0];
    assert!(
        common::wait_until(Duration::from_secs(3), || gone(pid)),
        "background child {pid} survived"
    );
    server.assert_no_children();
}

#[tokio::test]
async fn client_disconnect_kills_the_group() {
    use std::io::{Read, Write};
    let server = server(&[]);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /api/slow-writer HTTP/1.1\r\nHost: x\r\nX-Request-Id: writer-1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 64];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let pid = server.pids("writer-writer-1")[0];
    assert!(alive(pid));
    drop(stream);
    assert!(
        common::wait_until(Duration::from_secs(5), || gone(pid)),
        "writer {pid} outlived its client"
    );
    assert!(server.wait_for_log("client_gone=true", Duration::from_secs(2)));
    server.assert_no_children();
}

#[tokio::test]
async fn client_disconnect_before_headers_kills_the_group() {
    use std::io::Write;
    let server = server(&["--timeout", "20s"]);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /api/sleepy HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-1\r\n\r\n")
        .unwrap();
    let pids = server.pids("sleepy-gone-1");
    drop(stream);
    for pid in pids {
        assert!(
            common::wait_until(Duration::from_secs(5), || gone(pid)),
            "pid {pid} outlived its client"
        );
    }
    server.assert_no_children();
}

#[tokio::test]
async fn garbage_output_is_a_502_without_the_functions_bytes() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(!text.contains("SECRET-GARBAGE"), "{text}");
    assert!(
        text.contains("garbage.sh") && text.contains("Name: value"),
        "{text}"
    );
    assert!(text.contains("hint:"), "{text}");
}

/// A function that answers nothing and whose file was saved in place as it
/// ran (an editor's save met half-written, under load) is said so, with what
/// to do, rather than only "wrote nothing", which blames the code. One that
/// wrote nothing from a file left alone is told as before.
#[tokio::test]
async fn a_function_whose_file_was_saved_while_it_ran_is_said_so() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    // Saves itself in place (truncate, write), as `cat > file` does, and
    // writes nothing.
    common::write_script(
        &api.join("saves.sh"),
        "t=$(mktemp); cat \"$0\" > \"$t\"; cat \"$t\" > \"$0\"; rm -f \"$t\"",
    );
    common::write_script(&api.join("silent.sh"), "true");
    // Saves itself as most editors do, writing a new file and renaming it
    // over the old: the old one was read whole, and the failure is its own.
    common::write_script(
        &api.join("renames.sh"),
        "t=$(mktemp); cat \"$0\" > \"$t\"; chmod 755 \"$t\"; mv \"$t\" \"$0\"",
    );
    // Saved long before the request, whatever the machine's pace.
    std::fs::File::options()
        .write(true)
        .open(api.join("silent.sh"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let server = TestServer::start(&api, &[]);
    // The files are older than the clock's slack when they run: an in-place
    // save is told by a file that was there before the function started.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let saved = client().get(server.url("/api/saves")).send().await.unwrap();
    assert_eq!(saved.status(), 502);
    let text = saved.text().await.unwrap();
    assert!(
        text.contains(
            "wrote nothing to stdout; its file was saved in place as it started or while it ran"
        ) && text.contains("renaming it over the old one"),
        "{text}"
    );
    for quiet in ["/api/silent", "/api/renames"] {
        let answer = client().get(server.url(quiet)).send().await.unwrap();
        assert_eq!(answer.status(), 502, "{quiet}");
        let text = answer.text().await.unwrap();
        assert!(
            text.contains("wrote nothing to stdout") && !text.contains("saved"),
            "{quiet}: {text}"
        );
    }
}

/// A script that leaves a background job running as it exits (`nohup job
/// &`, a cgi-bin habit Apache lets run on) has it stopped with its request,
/// and the log says so: it was stopped without a word.
#[tokio::test]
async fn a_background_job_left_running_is_stopped_and_said_so() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    let marker = project.path().join("job.pid");
    common::write_script(
        &api.join("bg.sh"),
        &format!(
            "sleep 30 >/dev/null 2>&1 &\necho $! > {}\nprintf 'Content-Type: text/plain\\n\\nstarted\\n'",
            marker.display()
        ),
    );
    let server = TestServer::start(&api, &[]);
    let answer = client().get(server.url("/api/bg")).send().await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "started\n");
    let line = server.log_line("processes of its own still running", Duration::from_secs(5));
    assert!(line.contains("route=/api/bg"), "{line}");
    let job: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || gone(job)));
}

/// A path naming a file that is there but no function (a cgi-bin script
/// without its execute bit) is a 404 to the client, as any path without a
/// route, and the log tells the operator why, as Apache's error log does.
/// A private file is not named even there.
#[tokio::test]
async fn a_404_for_a_file_that_is_no_function_says_why_in_the_log_only() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    common::write_script(
        &api.join("hello.sh"),
        "printf 'Content-Type: text/plain\\n\\nhi\\n'",
    );
    std::fs::write(api.join("guestbook.cgi"), "#!/usr/bin/perl\nprint 1;\n").unwrap();
    common::write_script(&api.join("_secret.sh"), "echo");
    let server = TestServer::start(&api, &[]);
    let answer = client()
        .get(server.url("/api/guestbook.cgi"))
        .header("X-Request-Id", "nofn-1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let text = answer.text().await.unwrap();
    assert!(!text.contains("executable"), "{text}");
    let line = server.log_line("the file it names is there", Duration::from_secs(5));
    assert!(
        line.contains("request_id=nofn-1") && line.contains("file=guestbook.cgi"),
        "{line}"
    );
    let private = client()
        .get(server.url("/api/_secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 404);
    assert!(
        !server.log().contains("file=_secret.sh"),
        "{}",
        server.log()
    );
}

/// A local redirect's function is told where the client asked, as Apache
/// tells it for an internal redirect (an ErrorDocument-style handler reads
/// it): `REDIRECT_URL` and `REDIRECT_QUERY_STRING`. A request that came
/// straight has neither.
#[tokio::test]
async fn a_local_redirect_tells_its_target_where_the_client_asked() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    common::write_script(&api.join("from.sh"), "printf 'Location: /api/env\\n\\n'");
    std::fs::copy(fixtures("cgi").join("env.sh"), api.join("env.sh")).unwrap();
    let server = TestServer::start(&api, &[]);
    let redirected = env_map(&common::get_text(server.url("/api/from?x=1")).await);
    assert_eq!(redirected["REDIRECT_URL"], "/api/from");
    assert_eq!(redirected["REDIRECT_QUERY_STRING"], "x=1");
    assert_eq!(redirected["REQUEST_URI"], "/api/env");
    let straight = env_map(&common::get_text(server.url("/api/env")).await);
    assert!(!straight.contains_key("REDIRECT_URL"), "{straight:?}");
}

#[tokio::test]
async fn two_content_lengths_are_a_502_not_an_empty_reply() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/two-lengths"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("second, different `Content-Length:`"),
        "{text}"
    );
}

#[tokio::test]
async fn header_injection_is_a_502() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/injection"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn exit_before_headers_is_a_502_and_stderr_is_logged() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/fail-early"))
        .header("X-Request-Id", "early-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("exit 3"));
    assert!(server.wait_for_log("something went wrong", Duration::from_secs(2)));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("something went wrong"))
        .unwrap();
    assert!(
        line.contains("early-1") && line.contains("/api/fail-early"),
        "{line}"
    );
}

#[tokio::test]
async fn status_location_and_header_forms() {
    let server = server(&[]);
    let c = client();
    let teapot = c.get(server.url("/api/status")).send().await.unwrap();
    assert_eq!(teapot.status(), 418);
    assert_eq!(teapot.headers()["x-custom"], "yes");
    assert_eq!(teapot.text().await.unwrap(), "teapot\n");
    // The function's own reason phrase is sent as written, as CGI hosts do.
    let head = raw_request(
        server.addr,
        b"GET /api/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 418 I am a teapot\r\n"), "{head}");

    // A script written for Apache's nph- mode starts with a status line.
    let nph = c.get(server.url("/api/nph")).send().await.unwrap();
    assert_eq!(nph.status(), 403);
    assert_eq!(nph.headers()["x-legacy"], "nph");
    assert_eq!(nph.text().await.unwrap(), "no entry\n");
    let head = raw_request(
        server.addr,
        b"GET /api/nph HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 403 Keep Out\r\n"), "{head}");

    let plain = c.get(server.url("/api/no-type")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["x-only"], "header");
    assert_eq!(plain.text().await.unwrap(), "plain body\n");

    let redirect = c.get(server.url("/api/redirect")).send().await.unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        "https://example.com/elsewhere"
    );

    let local = c
        .get(server.url("/api/local-redirect"))
        .header("X-Request-Id", "local-1")
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    assert_eq!(local.text().await.unwrap(), "hello\n");
    // The redirecting invocation's line says where it sent the request (it
    // had no status of its own to show).
    let line = server.log_line("file=local-redirect.sh", Duration::from_secs(5));
    assert!(line.contains("redirected_to=\"/api/hello\""), "{line}");

    // The redirecting block's cookies and other headers reach the client with
    // the answer, as through Apache's internal redirect; what described its
    // own (dropped) body does not.
    let login = c
        .get(server.url("/api/login-redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // The answer's own cookie comes last, so a browser keeps its `theme`.
    let cookies: Vec<_> = login.headers().get_all("set-cookie").iter().collect();
    assert_eq!(
        cookies,
        ["session=abc; Path=/", "theme=dark", "theme=light"]
    );
    assert_eq!(login.headers()["x-logged-in"], "yes");
    assert_eq!(login.headers()["content-type"], "text/plain");
    assert!(login.headers().get("content-disposition").is_none());
    assert!(login.headers().get("location").is_none());
    assert_eq!(login.text().await.unwrap(), "hello\n");

    // A local path that is no function is the client's to follow, with the
    // rest of the block (a cookie set on the way).
    let away = c
        .get(server.url("/api/away-redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(away.status(), 302);
    assert_eq!(away.headers()["location"], "/thanks.html?from=form");
    assert_eq!(away.headers()["set-cookie"], "seen=1");
    // Not one a browser reads as another site, and a bad path named by the
    // function is the function's fault, not the client's 400.
    for query in ["backslash", "dots"] {
        let odd = c
            .get(server.url(&format!("/api/odd-redirect?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(odd.status(), 500, "{query}");
        assert!(odd.headers().get("location").is_none(), "{query}");
        assert!(
            odd.text().await.unwrap().contains("local redirect"),
            "{query}"
        );
    }

    let looped = c
        .get(server.url("/api/loop-redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status(), 500);
    let text = looped.text().await.unwrap();
    assert!(
        text.contains("local redirects") && text.contains("the last to /api/loop-redirect"),
        "{text}"
    );
}

#[tokio::test]
async fn head_runs_the_function_and_drops_its_body() {
    let server = server(&[]);
    let response = client()
        .head(server.url("/api/head"))
        .header("X-Request-Id", "head-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The GET's length is unknown (it streams), so the HEAD claims none either.
    assert!(
        response.headers().get("content-length").is_none(),
        "{:?}",
        response.headers()
    );
    assert_eq!(response.bytes().await.unwrap().len(), 0);
    assert!(common::wait_until(Duration::from_secs(3), || server
        .pid_dir
        .path()
        .join("head-head-1")
        .exists()));
    // One that declares its length keeps it.
    let sized = client()
        .head(server.url("/api/after-length"))
        .send()
        .await
        .unwrap();
    assert_eq!(sized.headers()["content-length"], "3");
}

/// A CGI page with validators answers a client that holds it with a 304, as
/// Apache's mod_cgi does: the body is not sent again, the validators, caching
/// headers and cookies are.
#[tokio::test]
async fn a_page_the_client_already_has_is_not_modified() {
    let server = server(&[]);
    let c = client();
    let send = |method: reqwest::Method,
                query: &'static str,
                validators: &'static [(&'static str, &'static str)]| {
        let mut request = c.request(method, server.url(&format!("/api/validated{query}")));
        for (name, value) in validators {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let get = |query, validators| send(reqwest::Method::GET, query, validators);
    let fresh = get("", &[]).await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.text().await.unwrap(), "<p>the page</p>\n");

    for (query, validators) in [
        ("", &[("if-none-match", "W/\"v7\"")][..]),
        (
            "",
            &[("if-modified-since", "Mon, 02 Nov 2026 10:00:00 GMT")][..],
        ),
        ("?status=explicit", &[("if-none-match", "\"v7\"")][..]),
    ] {
        let cached = get(query, validators).await.unwrap();
        assert_eq!(cached.status(), 304, "{query} {validators:?}");
        let headers = cached.headers().clone();
        assert_eq!(headers["etag"], "\"v7\"");
        assert_eq!(headers["cache-control"], "max-age=60");
        assert_eq!(headers["set-cookie"], "seen=1");
        assert!(headers.get("content-type").is_none(), "{headers:?}");
        assert_eq!(cached.bytes().await.unwrap().len(), 0);
    }

    // A HEAD claims no length for the body it does not describe.
    let head = send(reqwest::Method::HEAD, "", &[("if-none-match", "\"v7\"")])
        .await
        .unwrap();
    assert_eq!(head.status(), 304);
    assert!(head.headers().get("content-length").is_none());

    // A stale copy gets the page; a failed precondition a 412 without it.
    let stale = get("", &[("if-none-match", "\"v6\"")]).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.text().await.unwrap(), "<p>the page</p>\n");
    let refused = get("", &[("if-match", "\"v6\"")]).await.unwrap();
    assert_eq!(refused.status(), 412);
    // Not cached as the page would be: only its cookie is kept.
    assert!(refused.headers().get("cache-control").is_none());
    assert_eq!(refused.headers()["set-cookie"], "seen=1");
    assert_eq!(refused.bytes().await.unwrap().len(), 0);

    // Only GET and HEAD: a POST has done its work by the time it answers.
    let post = send(reqwest::Method::POST, "", &[("if-none-match", "\"v7\"")])
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
}

/// `OPTIONS *` asks about the server, and gets the methods functions are
/// given (it was a 404 "no function answers *"); an `Expect` other than
/// `100-continue` gets 417, and the function never runs (it was served as
/// if nothing had been asked). `100-continue` itself is met as before.
#[tokio::test]
async fn options_star_is_answered_and_an_unknown_expectation_is_a_417() {
    let server = server(&[]);
    let response = raw_request(
        server.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("allow: get, head, post, put, patch, delete, options"),
        "{response}"
    );
    let expecting = |value: &'static str| {
        client()
            .post(server.url("/api/echo"))
            .header("Expect", value)
            .header("x-request-id", format!("expect-{}", value.len()))
            .body("hi")
            .send()
    };
    let refused = expecting("fly-to-the-moon").await.unwrap();
    assert_eq!(refused.status(), 417);
    let text = refused.text().await.unwrap();
    assert!(text.contains("expects `fly-to-the-moon`"), "{text}");
    assert!(!server.log().contains("invocation request_id=expect-15 "));
    let met = expecting("100-continue").await.unwrap();
    assert_eq!(met.status(), 200);
    assert_eq!(met.text().await.unwrap(), "hi");
}

/// An HTTP/1.0 keep-alive client: an answer of known length keeps the
/// connection, a streamed one (no length, and 1.0 has no chunking) says
/// `connection: close` and closes. It said `connection: keep-alive` and
/// closed, leaving the client to find out.
#[tokio::test]
async fn an_http10_keep_alive_client_is_told_when_a_streamed_answer_closes() {
    let server = server(&[]);
    // Three requests on one connection: a 404 page and a function's answer
    // that gives its own Content-Length (lengths known), then a streamed
    // answer, after which the connection ends.
    let response = raw_request(
        server.addr,
        b"GET /api/nothing-here HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /api/after-length HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /api/stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .to_ascii_lowercase();
    let (first, second) = response
        .rsplit_once("http/1.0 200")
        .expect("every answer came");
    assert!(first.starts_with("http/1.0 404"), "{response}");
    assert_eq!(
        first.matches("\r\nconnection: keep-alive\r\n").count(),
        2,
        "{response}"
    );
    assert!(first.contains("content-length: 3\r\n"), "{response}");
    assert!(
        first.contains("\r\nconnection: keep-alive\r\n"),
        "{response}"
    );
    assert!(second.contains("\r\nconnection: close\r\n"), "{response}");
    assert!(!second.contains("keep-alive"), "{response}");
    assert!(second.ends_with("first\nsecond\n"), "{response}");
}

/// A function that writes less than its own Content-Length: the client always
/// gets the head and what was written, then the connection closes (as Apache
/// sends it); never an empty reply. The log says what was missing.
#[tokio::test]
async fn output_short_of_its_content_length_is_sent_then_cut() {
    let server = server(&[]);
    for round in 0..20 {
        let request = b"GET /api/short-length HTTP/1.1\r\nHost: x\r\n\r\n";
        let response = common::raw_request(server.addr, request);
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("\r\n\r\nabc"),
            "round {round}: {response:?}"
        );
    }
    assert!(server.wait_for_log(
        "7 bytes short of the Content-Length",
        Duration::from_secs(3)
    ));
}

/// A function that writes more than its own Content-Length: the client gets
/// what the length says, and the log says the rest was not sent, whether it
/// came in the same write or later.
#[tokio::test]
async fn output_past_its_content_length_is_not_sent_and_said() {
    let server = server(&[]);
    for (query, id) in [("", "past-1"), ("?later", "past-2")] {
        let response = client()
            .get(server.url(&format!("/api/long-length{query}")))
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "abc", "{query}");
        let line = server.log_line(
            &format!("request_id={id} file=long-length.sh"),
            Duration::from_secs(3),
        );
        assert!(
            line.contains("wrote more than the Content-Length"),
            "{}",
            server.log()
        );
    }
}

#[tokio::test]
async fn scripts_without_execute_bit_or_shebang_run_through_their_interpreter() {
    let server = server(&[]);
    let c = client();
    for (path, want) in [
        ("/api/plain", "no execute bit, run by sh\n"),
        ("/api/plain-py", "python without execute bit\n"),
        ("/api/noshebang", "executable without #!\n"),
    ] {
        let response = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), want, "{path}");
    }
}

/// A script's interpreter is looked up on the function's own PATH (as execvp
/// would with the function's environment), not on watchdog's; one that is on
/// no folder of it is a 500 that names it.
#[tokio::test]
async fn the_interpreter_comes_from_the_functions_path() {
    let bin = tempfile::tempdir().unwrap();
    common::write_script(
        &bin.path().join("sh"),
        "printf 'Content-Type: text/plain\\n\\nfake sh: %s %s\\n' \"$0\" \"${1##*/}\"",
    );
    let later = tempfile::tempdir().unwrap();
    let path = format!("PATH={}:{}", bin.path().display(), later.path().display());
    let faked = server(&["--env", &path]);
    let ran =
        |folder: &std::path::Path| format!("fake sh: {} plain.sh\n", folder.join("sh").display());
    for _ in 0..2 {
        let response = client().get(faked.url("/api/plain")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), ran(bin.path()));
    }
    // The interpreter watchdog found moves further down PATH: found again.
    std::fs::rename(bin.path().join("sh"), later.path().join("sh")).unwrap();
    let response = client().get(faked.url("/api/plain")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), ran(later.path()));
    drop(faked);

    let empty = tempfile::tempdir().unwrap();
    let path = format!("PATH={}", empty.path().display());
    let server = server(&["--env", &path]);
    let response = client().get(server.url("/api/plain")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("plain.sh") && text.contains("interpreter `sh` was not found on PATH"),
        "{text}"
    );
    server.assert_no_children();
}

#[tokio::test]
async fn a_function_that_cannot_start_is_a_500_naming_file_and_cause() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/bad-shebang"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("bad-shebang") && text.contains("#!"),
        "{text}"
    );
    // Named by its path in the served folder: where the server keeps its
    // files is not the client's to learn.
    let root = fixtures("cgi");
    assert!(!text.contains(root.to_str().unwrap()), "{text}");
    let missing = client().get(server.url("/api/notes")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn request_ids_are_generated_and_errors_follow_accept() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(response.text().await.unwrap().contains(&id));
    let json = client()
        .get(server.url("/api/nothing-here"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.headers()["content-type"], "application/json");
    let value: serde_json::Value = json.json().await.unwrap();
    assert_eq!(value["error"]["status"], 404);
    assert!(value["error"]["hint"].is_string());
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host_a_function_sees() {
    let server = server(&[]);
    // RFC 9112 §3.2.2: the target's authority, not the Host header.
    let answer = raw_request(
        server.addr,
        b"GET http://target.example:8080/api/env HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\nSERVER_NAME=target.example\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\nHTTP_HOST=target.example:8080\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn unsafe_paths_never_reach_a_function() {
    let server = server(&[]);
    for path in [
        "/api/../cgi/hello.sh",
        "/api/%2e%2e/cgi/hello",
        "/api/hello%00.sh",
        "/api/..%2fhello",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw_request(server.addr, request.as_bytes());
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
    }
    // Latin-1 where UTF-8 belongs: the hint says how to send it.
    let request = "GET /api/hello.sh/caf%E9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = raw_request(server.addr, request.as_bytes());
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("not valid UTF-8"), "{response}");
    assert!(response.contains("%C3%A9"), "{response}");
}

#[tokio::test]
async fn builtin_prefix_never_reaches_a_function() {
    let server = TestServer::start(&fixtures("cgi"), &["--prefix", "/"]);
    let c = client();
    assert_eq!(
        c.get(server.url("/_watchdog/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(server.url("/_watchdog/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let routes: serde_json::Value = c
        .get(server.url("/_watchdog/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["pattern"] == "/hello")
    );
    assert_eq!(
        c.get(server.url("/_watchdog/hello"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(server.url("/hello")).send().await.unwrap().status(),
        200
    );
}

/// A function that ignores SIGTERM gets its kill grace, but its client gets
/// the 504 at the deadline, not after that grace (a load balancer sized to
/// the timeout would have given up).
#[tokio::test]
async fn the_504_comes_at_the_deadline_even_when_the_function_ignores_sigterm() {
    let server = server(&["--timeout", "1s", "--kill-grace", "4s"]);
    let response = client()
        .get(server.url("/api/stubborn"))
        .header("x-request-id", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    // Answered while the function still had its grace.
    let pid = server.pids("stubborn-s1")[0];
    assert!(alive(pid), "the 504 waited for the group to be gone");
    assert!(
        common::wait_until(Duration::from_secs(10), || !alive(pid)),
        "{pid} outlived its kill grace"
    );
}

/// watchdog killed outright (SIGKILL: no shutdown, no timeout of its own)
/// while a CGI invocation hangs leaves nothing of it behind: the guardian
/// stops its group, leader and grandchild. Before, both slept on under init.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_invocation_does_not_outlive_a_killed_watchdog() {
    let server = server(&["--timeout", "60s", "--kill-grace", "500ms"]);
    // Finished invocations leave the guardian's roster: only the hung one is
    // stopped below.
    for _ in 0..20 {
        let answer = client().get(server.url("/api/hello")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    let url = server.url("/api/sleepy");
    // Its answer never comes: the server dies under it. (A thread of its own
    // runs it while this one waits for the pid file.)
    let request =
        tokio::spawn(async move { client().get(url).header("x-request-id", "k1").send().await });
    let pids = server.pids("sleepy-k1");
    assert_eq!(pids.len(), 2, "{pids:?}");
    let log = server.log_buffer();
    server.stop_with(&[nix::sys::signal::Signal::SIGKILL]);
    assert!(request.await.unwrap().is_err());
    for pid in pids {
        assert!(
            common::wait_until(Duration::from_secs(10), || !alive(pid)),
            "{pid} outlived watchdog"
        );
    }
    assert!(
        common::log_shows(&log, "the guardian stopped them", Duration::from_secs(5)),
        "{}",
        log.lock().unwrap()
    );
    assert!(
        log.lock().unwrap().contains("groups=1 "),
        "{}",
        log.lock().unwrap()
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let server = server(&[
        "--max-concurrency",
        "1",
        "--queue-timeout",
        "300ms",
        "--timeout",
        "3s",
    ]);
    let c = client();
    let first = tokio::spawn({
        let url = server.url("/api/stream");
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = c.get(server.url("/api/hello")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    // Its wait is in the queue-wait histogram (a saturated server's would
    // look idle without the requests it turned away), and it is counted.
    let metrics = c
        .get(server.url("/_watchdog/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"watchdog_queue_rejected_total{route="/api/hello"} 1"#),
        "{metrics}"
    );
    let waited: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("watchdog_queue_wait_seconds_sum "))
        .and_then(|sum| sum.trim().parse().ok())
        .unwrap_or_default();
    assert!(waited >= 0.29, "{metrics}");
    // Once (it was recorded twice), and the first, still running, not yet.
    assert!(
        metrics.contains("watchdog_queue_wait_seconds_count 1\n"),
        "{metrics}"
    );
    // It never ran: no near-zero duration flatters the histogram.
    assert!(
        !metrics.contains(r#"watchdog_invocation_duration_seconds_count{route="/api/hello"} 1"#),
        "{metrics}"
    );
    assert_eq!(first.await.unwrap(), "first\nsecond\n");
    // The slot is free again once the first function has exited.
    assert_eq!(
        c.get(server.url("/api/hello"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_finished_response_does_not_kill_a_function_still_working() {
    let server = server(&[]);
    let c = client();
    let empty = c
        .get(server.url("/api/after-204"))
        .header("X-Request-Id", "r204")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 204);
    let sized = c
        .get(server.url("/api/after-length"))
        .header("X-Request-Id", "rlen")
        .send()
        .await
        .unwrap();
    assert_eq!(sized.text().await.unwrap(), "ok\n");
    for file in ["after204-r204", "afterlen-rlen"] {
        let path = server.pid_dir.path().join(file);
        assert!(
            common::wait_until(Duration::from_secs(3), || path.exists()),
            "{file}: the function was cut short"
        );
    }
    // Both invocations' log lines, once written, say the client was not gone.
    for id in ["r204", "rlen"] {
        assert!(
            server.wait_for_log(&format!("request_id={id} "), Duration::from_secs(5)),
            "{}",
            server.log()
        );
    }
    assert!(
        !server.log().contains("client_gone=true"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn timeout_gives_the_group_its_kill_grace() {
    let server = server(&["--timeout", "500ms", "--kill-grace", "2s"]);
    let response = client()
        .get(server.url("/api/graceful-child"))
        .header("X-Request-Id", "g1")
        .send()
        .await
        .unwrap();
    // Headers were sent, so the body is cut off rather than answered 504.
    assert_eq!(response.status(), 200);
    assert!(
        response.text().await.is_err(),
        "a timed-out body must not look complete"
    );
    let cleaned = server.pid_dir.path().join("cleanup-g1");
    assert!(
        common::wait_until(Duration::from_secs(3), || cleaned.exists()),
        "the TERM handler had no time to run"
    );
    server.assert_no_children();
}

#[tokio::test]
async fn a_megabyte_stderr_line_does_not_block_the_request() {
    let server = server(&[]);
    let started = Instant::now();
    let response = client()
        .get(server.url("/api/long-stderr"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "after the long line\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Logged in bounded pieces, not one line of a megabyte.
    assert!(server.wait_for_log("xxxxxxxx", Duration::from_secs(2)));
    assert!(server.log().lines().all(|line| line.len() < 20_000));
}

/// A request without a body gets an empty stdin, never what an earlier request
/// on the same connection (so the same thread, whose children pass their streams
/// through the same descriptor slots) sent to a function that left it unread.
#[tokio::test]
async fn a_request_without_a_body_never_reads_an_earlier_requests_body() {
    let server = server(&[]);
    let c = client();
    for round in 0..3 {
        let unread = c
            .post(server.url("/api/hello"))
            .body(format!("secret body {round}\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(unread.text().await.unwrap(), "hello\n");
        // The same client, so the same kept-alive connection: `get_text` would
        // open a new one, which may land on the other connection thread.
        let text = common::get_text_with(&c, server.url("/api/body-info")).await;
        assert!(text.contains("received=0"), "round {round}: {text}");
    }
}
