//! Operations (CONTRACT §2 live reload, §7 endpoints and logs, §8 shutdown).

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client, get_text, gone, wait_for_text, write_script};

/// A project whose `api/ok.sh` answers "ok", and its api folder.
fn project_with_ok() -> (tempfile::TempDir, std::path::PathBuf) {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("ok.sh"),
        "printf 'Content-Type: text/plain\\n\\nok\\n'",
    );
    (project, api)
}

async fn status_of(server: &TestServer, path: &str) -> u16 {
    client()
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn eventually(server: &TestServer, path: &str, want: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = status_of(server, path).await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{path} still answers {status}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A change takes effect for the next request (CONTRACT §2), not one after the
/// reload's quiet period: `cp f.sh api/ && curl` works. The request that found
/// no function (or a function whose file went) has DIR walked early and waits
/// for it, which the log says. A request may come before the watcher has read
/// the change; the next one, 25 ms on, is the one that waits.
async fn answers_without_the_quiet_period(server: &TestServer, path: &str) {
    let early_walks = || server.log().matches("walking DIR early").count();
    let before = early_walks();
    eventually(server, path, 200, Duration::from_secs(1)).await;
    assert!(early_walks() > before, "{path}: {}", server.log());
}

#[tokio::test]
async fn files_added_removed_and_renamed_while_serving() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("first.sh"),
        "printf 'Content-Type: text/plain\\n\\nfirst\\n'",
    );
    let server = TestServer::start(&api, &[]);
    assert_eq!(status_of(&server, "/api/second").await, 404);

    write_script(
        &api.join("second.sh"),
        "printf 'Content-Type: text/plain\\n\\nsecond\\n'",
    );
    answers_without_the_quiet_period(&server, "/api/second").await;

    std::fs::remove_file(api.join("first.sh")).unwrap();
    assert_eq!(status_of(&server, "/api/first").await, 404);

    // Renamed to another language: its URL keeps answering.
    write_script(
        &api.join("lang.sh"),
        "printf 'Content-Type: text/plain\\n\\nlang\\n'",
    );
    answers_without_the_quiet_period(&server, "/api/lang").await;
    std::fs::rename(api.join("lang.sh"), api.join("lang.py")).unwrap();
    answers_without_the_quiet_period(&server, "/api/lang").await;

    write_script(
        &api.join("team/members/list.sh"),
        "printf 'Content-Type: text/plain\\n\\nlist\\n'",
    );
    eventually(
        &server,
        "/api/team/members/list",
        200,
        Duration::from_secs(1),
    )
    .await;
    std::fs::rename(api.join("team"), api.join("crew")).unwrap();
    answers_without_the_quiet_period(&server, "/api/crew/members/list").await;
    assert_eq!(status_of(&server, "/api/team/members/list").await, 404);

    // A burst of changes settles into one consistent table.
    for i in 0..50 {
        write_script(
            &api.join(format!("burst/f{i}.sh")),
            "printf 'Content-Type: text/plain\\n\\nb\\n'",
        );
    }
    eventually(&server, "/api/burst/f49", 200, Duration::from_secs(2)).await;
    for i in 0..50 {
        assert_eq!(status_of(&server, &format!("/api/burst/f{i}")).await, 200);
    }

    // A conflict appearing while serving is reported and answers 500.
    std::fs::write(
        api.join("second.py"),
        "print('Content-Type: text/plain\\n\\npy')\n",
    )
    .unwrap();
    eventually(&server, "/api/second", 500, Duration::from_secs(1)).await;
    assert!(server.wait_for_log("route conflict", Duration::from_secs(1)));
    let body = common::get_text(server.url("/api/second")).await;
    assert!(
        body.contains("second.py") && body.contains("second.sh"),
        "{body}"
    );
    // Resolved: the next request waits for the walk instead of getting the
    // 500 that names the file just removed.
    std::fs::remove_file(api.join("second.py")).unwrap();
    answers_without_the_quiet_period(&server, "/api/second").await;
}

/// A script saved in place is open for writing while the save runs, and the
/// kernel will not run it then (ETXTBSY): a request in that moment waits for
/// the save to end, where it got a 500 that said "Text file busy". Held open
/// for longer, it gets a 503 that says why, to be retried.
#[tokio::test]
async fn a_request_during_an_in_place_save_waits_for_it() {
    let (_project, api) = project_with_ok();
    let server = TestServer::start(&api, &[]);
    assert_eq!(status_of(&server, "/api/ok").await, 200);
    let open_for_writing = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(api.join("ok.sh"))
            .unwrap()
    };
    let saving = open_for_writing();
    let request = tokio::spawn(client().get(server.url("/api/ok")).send());
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(saving);
    let answered = request.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "ok\n");

    let stuck = open_for_writing();
    let refused = client().get(server.url("/api/ok")).send().await.unwrap();
    drop(stuck);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let text = refused.text().await.unwrap();
    assert!(text.contains("its file is being written"), "{text}");
    assert!(text.contains("rename it over"), "{text}");
}

/// A script run by its interpreter (no execute bit) has no ETXTBSY to guard
/// it: met between a save's truncation and its write, it is empty, and the
/// interpreter ran it as a program that does nothing (a 502 "wrote
/// nothing"). The request waits for the write instead; a file that stays
/// empty is a 500 that says so.
#[tokio::test]
async fn a_request_that_meets_an_empty_script_waits_for_its_save() {
    use std::io::Write;
    let (_project, api) = project_with_ok();
    let script = api.join("plain.sh");
    let code = "printf 'Content-Type: text/plain\\n\\nsaved\\n'\n";
    std::fs::write(&script, code).unwrap();
    let server = TestServer::start(&api, &[]);
    assert_eq!(status_of(&server, "/api/plain").await, 200);

    // The save: truncated, and written a moment later.
    let mut saving = std::fs::File::create(&script).unwrap();
    let request = tokio::spawn(client().get(server.url("/api/plain")).send());
    tokio::time::sleep(Duration::from_millis(30)).await;
    saving.write_all(code.as_bytes()).unwrap();
    drop(saving);
    let answered = request.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "saved\n");

    std::fs::File::create(&script).unwrap();
    let refused = client().get(server.url("/api/plain")).send().await.unwrap();
    assert_eq!(refused.status(), 500);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("plain.sh: cannot start the function: its file is empty"),
        "{text}"
    );
    assert!(text.contains("rename it over"), "{text}");
}

/// What a function writes to stderr as it handles the SIGTERM of a timeout
/// (or of a client that left) reaches the log: it was dropped once the
/// group was signalled, where it matters most.
#[tokio::test]
async fn stderr_written_while_stopping_is_logged() {
    let (_project, api) = project_with_ok();
    write_script(
        &api.join("cleanup.sh"),
        "trap 'echo \"caught TERM, cleaning up\" >&2; sleep 0.2; echo \"cleanup done\" >&2; exit 143' TERM\n\
         echo started >&2\n\
         sleep 30 &\n\
         wait",
    );
    let server = TestServer::start(&api, &["--timeout", "1s"]);
    assert_eq!(status_of(&server, "/api/cleanup").await, 504);
    let line = server.log_line("invocation request_id=", Duration::from_secs(5));
    assert!(line.contains("exit_code=143"), "{line}");
    let log = server.log();
    assert!(log.contains("caught TERM, cleaning up"), "{log}");
    assert!(log.contains("cleanup done"), "{log}");
}

/// An upload still arriving at the timeout is no whole body: the function's
/// stdin stays open until it has been stopped. It was closed at the deadline
/// beside the SIGTERM, and a function that outlives the SIGTERM (here one that
/// ignores it, until the KILL) read a clean end and acted on a cut-off body.
#[tokio::test]
async fn an_upload_cut_off_by_the_timeout_never_reaches_the_function_as_an_end() {
    let (_project, api) = project_with_ok();
    write_script(
        &api.join("count.sh"),
        "trap '' TERM\n\
         n=$(wc -c)\n\
         echo \"stdin ended after $n bytes\" >&2\n\
         printf 'Content-Type: text/plain\\n\\n%s bytes\\n' \"$n\"",
    );
    let server = TestServer::start(&api, &["--timeout", "1s", "--kill-grace", "1s"]);
    let mut upload = common::start_upload(server.addr, "/api/count", "late-1", 1000, 10);
    common::trickle(&mut upload, 8, Duration::from_millis(250));
    let answer = common::read_answer(&mut upload);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let line = server.log_line("invocation request_id=late-1 ", Duration::from_secs(5));
    assert!(
        line.contains("signal=9") || line.contains("SIGKILL"),
        "{line}"
    );
    assert!(
        !server.log().contains("stdin ended after"),
        "{}",
        server.log()
    );
}

/// A script that loses its execute bit (an editor that writes a new file and
/// sets its mode after, a `chmod -x`) runs by its extension's interpreter at
/// once, as it does after the next walk: in between it answered 500
/// "permission denied".
#[tokio::test]
async fn a_script_that_just_lost_its_execute_bit_still_runs() {
    use std::os::unix::fs::PermissionsExt;
    let (_project, api) = project_with_ok();
    let server = TestServer::start(&api, &[]);
    assert_eq!(status_of(&server, "/api/ok").await, 200);
    let script = api.join("ok.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let answered = client().get(server.url("/api/ok")).send().await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "ok\n");
}

/// A local redirect's log line names the path it sent the request to, and
/// not its query, which may carry a token.
#[tokio::test]
async fn a_local_redirect_is_logged_without_its_query() {
    let (_project, api) = project_with_ok();
    write_script(
        &api.join("go.sh"),
        "printf 'Location: /api/ok?token=s3cret\\n\\n'",
    );
    let server = TestServer::start(&api, &[]);
    let answered = client().get(server.url("/api/go")).send().await.unwrap();
    assert_eq!(answered.status(), 200);
    let line = server.log_line("file=go.sh", Duration::from_secs(5));
    assert!(line.contains("redirected_to=\"/api/ok\""), "{line}");
    assert!(!server.log().contains("s3cret"), "{}", server.log());
}

/// A script saved with Windows line endings: the kernel looks for `/bin/sh\r`.
/// The 500 says so, where it said the interpreter was not found.
#[tokio::test]
async fn a_script_with_windows_line_endings_is_named_as_such() {
    let (_project, api) = project_with_ok();
    let crlf = api.join("crlf.sh");
    std::fs::write(
        &crlf,
        "#!/bin/sh\r\nprintf 'Content-Type: text/plain\\n\\nhi\\n'\r\n",
    )
    .unwrap();
    std::fs::set_permissions(&crlf, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The commonest Python `#!` line: env runs, and finds no `python3\r`.
    let env_crlf = api.join("env-crlf.py");
    std::fs::write(
        &env_crlf,
        "#!/usr/bin/env python3\r\nprint('Content-Type: text/plain\\n\\nhi')\r\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &env_crlf,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Run by its interpreter (no execute bit), where a carriage return is
    // no reason for an exit 127 of its own: not taken for one.
    std::fs::write(
        api.join("exits-127.py"),
        "#!/usr/bin/env python3\r\nimport sys\r\nsys.exit(127)\r\n",
    )
    .unwrap();
    let server = TestServer::start(&api, &[]);
    let answered = client()
        .get(server.url("/api/exits-127"))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 502);
    assert!(!answered.text().await.unwrap().contains("Windows"));
    for (path, file) in [("/api/crlf", "crlf.sh"), ("/api/env-crlf", "env-crlf.py")] {
        let answered = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(answered.status(), 500);
        let text = answered.text().await.unwrap();
        assert!(text.contains("Windows line endings"), "{text}");
        assert!(text.contains(&format!("dos2unix {file}")), "{text}");
    }
}

/// A `#!` line whose interpreter is missing is a 500 that names it, also when
/// it goes through env (which exits 127, and was a 502 blaming the output):
/// `#!/usr/bin/env ruby` with no ruby, and `#!/usr/bin/env sh -e`, which asks
/// env for a program called `sh -e`. A script of its own that exits 127 (a
/// command it ran was missing) is still the script's 502.
#[tokio::test]
async fn a_missing_interpreter_on_the_shebang_line_is_named() {
    let (_project, api) = project_with_ok();
    let executable = |name: &str, body: &str| {
        let path = api.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    executable(
        "env-missing",
        "#!/usr/bin/env watchdog-no-such-interpreter\necho\n",
    );
    executable(
        "env-options",
        "#!/usr/bin/env sh -e\nprintf 'Content-Type: text/plain\\n\\nhi\\n'\n",
    );
    executable("absent", "#!/opt/no-such/python\nprint()\n");
    executable("own-127", "#!/usr/bin/env sh\nwatchdog-no-such-command\n");
    let server = TestServer::start(&api, &[]);
    for (path, says) in [
        (
            "/api/env-missing",
            "asks env for `watchdog-no-such-interpreter`",
        ),
        ("/api/env-options", "one argument, `sh -e`"),
        ("/api/absent", "`#!/opt/no-such/python`"),
    ] {
        let answered = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(answered.status(), 500, "{path}");
        let text = answered.text().await.unwrap();
        assert!(text.contains(says), "{path}: {text}");
    }
    let answered = client()
        .get(server.url("/api/own-127"))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 502);
    assert!(!answered.text().await.unwrap().contains("env"));
}

/// DIR regenerated (`rm -rf api && cp -r ...`) or swapped for another folder:
/// the watch follows DIR's path to the folder there now.
#[tokio::test]
async fn dir_deleted_and_made_again_or_swapped_is_watched_again() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    let hello = "printf 'Content-Type: text/plain\\n\\nhi\\n'";
    write_script(&api.join("a.sh"), hello);
    let server = TestServer::start(&api, &[]);
    assert_eq!(status_of(&server, "/api/a").await, 200);

    std::fs::remove_dir_all(&api).unwrap();
    assert!(server.wait_for_log("DIR is gone", Duration::from_secs(2)));
    // Ready means routes loaded: not while DIR is gone.
    assert_eq!(status_of(&server, "/_watchdog/readyz").await, 503);
    // A URL with no function answers at once: no walk is coming to wait for.
    let asked = Instant::now();
    assert_eq!(status_of(&server, "/api/nothing-here").await, 404);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    write_script(&api.join("b.sh"), hello);
    eventually(&server, "/api/b", 200, Duration::from_secs(3)).await;
    assert_eq!(status_of(&server, "/_watchdog/readyz").await, 200);
    // Watched again: a later change is picked up.
    write_script(&api.join("c.sh"), hello);
    eventually(&server, "/api/c", 200, Duration::from_secs(2)).await;

    let next = project.path().join("api.next");
    write_script(&next.join("d.sh"), hello);
    std::fs::rename(&api, project.path().join("api.old")).unwrap();
    std::fs::rename(&next, &api).unwrap();
    eventually(&server, "/api/d", 200, Duration::from_secs(3)).await;
    write_script(&api.join("e.sh"), hello);
    eventually(&server, "/api/e", 200, Duration::from_secs(2)).await;
}

/// DIR given as a release link (`current -> releases/v1/api`) that a deploy
/// points elsewhere, the way Capistrano and most deploy scripts do: the new
/// release answers, the old one is watched no more, and the new one is.
#[tokio::test]
async fn a_dir_link_pointed_at_another_release_is_followed() {
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    let says = |text: &str| format!("printf 'Content-Type: text/plain\\n\\n{text}\\n'");
    write_script(&root.join("releases/v1/api/hello.sh"), &says("v1"));
    write_script(&root.join("releases/v2/api/hello.sh"), &says("v2"));
    write_script(&root.join("releases/v2/api/only-v2.sh"), &says("new"));
    let current = root.join("current");
    std::os::unix::fs::symlink(root.join("releases/v1/api"), &current).unwrap();
    let server = TestServer::start(&current, &["--prefix", "/api"]);
    assert_eq!(get_text(server.url("/api/hello")).await, "v1\n");
    // Pointed at v2 at once, by a rename over the link.
    let next = root.join("current.next");
    std::os::unix::fs::symlink(root.join("releases/v2/api"), &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    wait_for_text(server.url("/api/hello"), "v2\n", Duration::from_secs(5)).await;
    assert_eq!(get_text(server.url("/api/only-v2")).await, "new\n");
    assert!(server.log().contains("DIR leads to another folder now"));
    // v2 is watched now, and v1 no more.
    write_script(&root.join("releases/v2/api/added.sh"), &says("added"));
    wait_for_text(server.url("/api/added"), "added\n", Duration::from_secs(5)).await;
    let reloads = || server.log().matches("routes reloaded").count();
    let before = reloads();
    write_script(&root.join("releases/v1/api/hello.sh"), &says("v1 again"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reloads(), before, "{}", server.log());
    assert_eq!(get_text(server.url("/api/hello")).await, "v2\n");
}

/// CONTRACT §2: nothing that resolves outside DIR reaches a function, not even
/// in the moments before live reload has walked the change.
#[tokio::test]
async fn a_file_swapped_for_a_symlink_outside_dir_is_not_run_before_the_reload() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("a.sh"),
        "printf 'Content-Type: text/plain\\n\\ninside\\n'",
    );
    write_script(
        &project.path().join("outside.sh"),
        "printf 'Content-Type: text/plain\\n\\nOUTSIDE\\n'",
    );
    let server = TestServer::start(&api, &[]);
    assert_eq!(common::get_text(server.url("/api/a")).await, "inside\n");
    std::fs::remove_file(api.join("a.sh")).unwrap();
    std::os::unix::fs::symlink(project.path().join("outside.sh"), api.join("a.sh")).unwrap();
    // Well inside the 75 ms settle: the table still has a.sh.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = client().get(server.url("/api/a")).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(!text.contains("OUTSIDE"), "{status} {text}");
    assert_eq!(status, 404, "{text}");
    // And after the reload, the symlink is no route at all.
    eventually(&server, "/api/a", 404, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn metrics_count_requests_timeouts_and_durations() {
    let (_project, api) = project_with_ok();
    write_script(&api.join("slow.sh"), "sleep 5");
    let server = TestServer::start(&api, &["--timeout", "1500ms", "--kill-grace", "100ms"]);
    let c = client();
    for _ in 0..3 {
        // Read each body: a client that leaves early gets its function killed,
        // which would (rightly) change the exit counted below.
        let response = c.get(server.url("/api/ok")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok\n");
    }
    assert_eq!(
        c.get(server.url("/api/slow"))
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
    assert_eq!(
        c.get(server.url("/api/missing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = common::get_text_with(&c, server.url("/_watchdog/metrics")).await;
    let has = |needle: &str| metrics.lines().any(|l| l.starts_with(needle));
    assert!(
        has(r#"watchdog_requests_total{route="/api/ok",status="200"} 3"#),
        "{metrics}"
    );
    assert!(
        has(r#"watchdog_requests_total{route="/api/slow",status="504"} 1"#),
        "{metrics}"
    );
    assert!(
        has(r#"watchdog_requests_total{route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        has(r#"watchdog_timeouts_total{route="/api/slow"} 1"#),
        "{metrics}"
    );
    assert!(
        has(r#"watchdog_invocation_duration_seconds_count{route="/api/ok"} 3"#),
        "{metrics}"
    );
    assert!(
        has(r#"watchdog_function_exits_total{route="/api/ok",exit="code:0"} 3"#),
        "{metrics}"
    );
    assert!(has("watchdog_routes 2"), "{metrics}");
    // Every invocation that started has finished, and was counted once.
    assert!(
        has(r#"watchdog_invocations_in_flight{route="/api/ok"} 0"#),
        "{metrics}"
    );
    assert!(
        has(r#"watchdog_kills_total{route="/api/slow",reason="timeout"} 1"#),
        "{metrics}"
    );
    assert!(has("watchdog_queue_wait_seconds_count 4"), "{metrics}");
    // Rare events are at 0 before their first, from a route's first request
    // (or, for the server's own, from the start), so that increase() sees
    // the first one.
    for zero in [
        r#"watchdog_timeouts_total{route="/api/ok"} 0"#,
        r#"watchdog_kills_total{route="/api/ok",reason="timeout"} 0"#,
        r#"watchdog_kills_total{route="/api/ok",reason="client_gone"} 0"#,
        r#"watchdog_queue_rejected_total{route="/api/ok"} 0"#,
        "watchdog_route_reloads_total 0",
        "watchdog_send_timeouts_total 0",
        "watchdog_head_timeouts_total 0",
    ] {
        assert!(has(zero), "{zero}\n{metrics}");
    }
    // Each series says what it counts.
    for name in [
        "watchdog_requests_total",
        "watchdog_queue_wait_seconds",
        "watchdog_kills_total",
    ] {
        assert!(has(&format!("# HELP {name} ")), "{metrics}");
    }
}

#[tokio::test]
async fn json_logs_parse_and_carry_exit_codes_and_signals() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("fails.sh"),
        "printf 'Content-Type: text/plain\\n\\nno\\n'; exit 7",
    );
    write_script(&api.join("hangs.sh"), "echo to-stderr >&2; sleep 5");
    let server = TestServer::start(
        &api,
        &[
            "--log-format",
            "json",
            "--timeout",
            "1500ms",
            "--kill-grace",
            "100ms",
        ],
    );
    let c = client();
    for id in ["json-1", "json-2"] {
        let path = if id == "json-1" {
            "/api/fails?token=secret"
        } else {
            "/api/hangs"
        };
        // Read the body, so the client never leaves before the function ends.
        let response = c
            .get(server.url(path))
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        let _ = response.text().await;
    }
    let logged = |id: &str| {
        server.log().lines().any(|l| {
            l.contains("\"message\":\"invocation\"")
                && l.contains(&format!("\"request_id\":\"{id}\""))
        })
    };
    assert!(common::wait_until(Duration::from_secs(5), || logged(
        "json-1"
    ) && logged(
        "json-2"
    )));
    let events: Vec<serde_json::Value> = server
        .log()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    let invocation = |id: &str| {
        events
            .iter()
            .find(|e| e["message"] == "invocation" && e["request_id"] == id)
            .unwrap_or_else(|| panic!("no invocation event for {id}"))
            .clone()
    };
    let fails = invocation("json-1");
    assert_eq!(fails["exit_code"], 7);
    assert_eq!(fails["status"], 200);
    assert_eq!(fails["route"], "/api/fails");
    // The path, without the query (tokens), and who asked.
    assert_eq!(fails["path"], "/api/fails");
    assert!(!server.log().contains("secret"));
    let client_addr = fails["client"].as_str().unwrap_or_default();
    assert!(client_addr.starts_with("127.0.0.1:"), "{fails}");
    let hangs = invocation("json-2");
    assert_eq!(hangs["signal"], 15);
    assert_eq!(hangs["timed_out"], true);
    assert_eq!(hangs["status"], 504);
    assert!(
        events
            .iter()
            .any(|e| e["request_id"] == "json-2" && e["message"] == "to-stderr")
    );
    // Values, not Rust's debug text: no `Some("…")` around a path, and a
    // failed request's error once, as text (a `detail` field repeated it as
    // a Rust struct).
    for event in &events {
        for (key, value) in event.as_object().unwrap() {
            let text = value.as_str().unwrap_or_default();
            assert!(!text.starts_with("Some("), "{key}: {event}");
        }
    }
    let failed = events
        .iter()
        .find(|e| e["message"] == "request failed" && e["request_id"] == "json-2")
        .unwrap_or_else(|| panic!("no request failed event for json-2"));
    assert!(failed.get("detail").is_none(), "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("timed out"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("two-seconds.sh"),
        "echo $$ > \"$PID_DIR/drain\"; sleep 2; printf 'Content-Type: text/plain\\n\\ndone\\n'",
    );
    let server = TestServer::start(&api, &["--drain-timeout", "10s"]);
    let addr = server.addr;
    let url = server.url("/api/two-seconds");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    let pid = server.pids("drain")[0];
    let watchdog_pid = server.pid();
    let stopped = std::thread::spawn(move || server.terminate());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "a new connection must be refused while draining"
    );
    let response = in_flight.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done\n");
    let status = stopped.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(gone(pid));
    assert!(common::children(watchdog_pid).is_empty());
}

/// Adds the warm counter worker (fixtures/warm) to `project` as `api/counter.py`.
fn add_warm_counter(project: &std::path::Path) {
    let api = project.join("api");
    std::fs::create_dir_all(&api).unwrap();
    std::fs::copy(
        common::fixtures("warm").join("counter.py"),
        api.join("counter.py"),
    )
    .unwrap();
    std::fs::write(
        project.join("watchdog.toml"),
        "[functions.\"counter.py\"]\nwarm = { protocol = \"http\" }\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_stops_what_is_still_running() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("forever.sh"),
        "echo $$ > \"$PID_DIR/forever\"; sleep 60",
    );
    // And a warm worker still busy with its request.
    add_warm_counter(project.path());
    let server = TestServer::start(&api, &["--drain-timeout", "500ms", "--kill-grace", "1s"]);
    let in_flight = |path: &str| {
        let url = server.url(path);
        tokio::spawn(async move {
            let response = client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let cgi = in_flight("/api/forever");
    let warm = in_flight("/api/counter?sleep=60");
    let pid = server.pids("forever")[0];
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let log = server.log_buffer();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(gone(pid) || !common::alive(pid));
    // Their clients are told why, with a status a load balancer retries on
    // (a CGI function's got a 500 "internal error", a warm one's an empty reply).
    for (what, answer) in [("cgi", cgi), ("warm", warm)] {
        let (status, text) = answer.await.unwrap();
        assert_eq!(status, 503, "{what}: {text}");
        assert!(text.contains("shutting down"), "{what}: {text}");
    }
    // The worker had its grace before SIGKILL (CONTRACT §8), though its
    // request was stopped: the fixture takes 0.2 s to stop on SIGTERM.
    let stopped_gracefully = || log.lock().unwrap().contains("stopped gracefully");
    assert!(
        common::wait_until(Duration::from_secs(2), stopped_gracefully),
        "{}",
        log.lock().unwrap()
    );
}

/// SIGHUP (the terminal or SSH session closed) drains as SIGTERM does; left
/// to its default action it ended watchdog at once and orphaned the warm
/// worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hangup_drains_like_sigterm_and_leaves_no_worker_behind() {
    let project = tempfile::tempdir().unwrap();
    add_warm_counter(project.path());
    // SIGHUP's default action, whatever this test runs under: watchdog keeps
    // an inherited "ignore" (nohup), which scripts/smoke.sh checks.
    let default_hangup = |command: &mut std::process::Command| {
        use std::os::unix::process::CommandExt;
        #[allow(unsafe_code)]
        // SAFETY: signal() is async-signal-safe; it only resets one disposition.
        unsafe {
            command.pre_exec(|| {
                nix::libc::signal(nix::libc::SIGHUP, nix::libc::SIG_DFL);
                Ok(())
            });
        }
    };
    let server = TestServer::start_with(&project.path().join("api"), &[], default_hangup);
    let answer = common::get_json(&server, "/api/counter").await;
    let worker = answer["pid"].as_i64().unwrap() as i32;
    let log = server.log_buffer();
    let status = server.stop_with(&[nix::sys::signal::Signal::SIGHUP]);
    assert!(status.success(), "{status:?}");
    assert!(log.lock().unwrap().contains("SIGHUP"));
    assert!(
        common::wait_until(Duration::from_secs(3), || gone(worker)),
        "worker {worker} outlived watchdog"
    );
}

/// The signal tests' setting: a request in flight to a function that runs
/// for two minutes (its pid given), and a drain timeout of a minute.
fn serving_forever() -> (
    tempfile::TempDir,
    TestServer,
    tokio::task::JoinHandle<(u16, String)>,
    i32,
) {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("forever.sh"),
        "echo $$ > \"$PID_DIR/forever\"; sleep 120",
    );
    let server = TestServer::start(&api, &["--drain-timeout", "60s", "--kill-grace", "1s"]);
    let url = server.url("/api/forever");
    let in_flight = tokio::spawn(async move {
        let response = client().get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    let pid = server.pids("forever")[0];
    (project, server, in_flight, pid)
}

/// A signal within a second of the first is one keypress passed on twice
/// (`npm run` sends Ctrl-C to its whole group): the drain goes on, and the
/// log says so and what to do. It was dropped at debug, with no word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_right_after_the_first_is_said_to_be_taken_for_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (_project, server, in_flight, _) = serving_forever();
    let watchdog = Pid::from_raw(server.pid() as i32);
    kill(watchdog, Signal::SIGTERM).unwrap();
    assert!(server.wait_for_log("signal received", Duration::from_secs(5)));
    kill(watchdog, Signal::SIGINT).unwrap();
    assert!(
        server.wait_for_log(
            "taken for the same one; send another",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("second signal:"), "{}", server.log());
    // One more than a second after the first is a second signal: the drain
    // ends (the test's own stop).
    let stopping = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        server.stop_with(&[Signal::SIGINT])
    });
    let status = tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("a signal after the first second did not cut the drain short")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = in_flight.await;
}

/// A second signal during the drain stops what still runs at once, rather
/// than after the drain timeout (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_drain_short() {
    let (_project, server, in_flight, pid) = serving_forever();
    let log = server.log_buffer();
    let stopping = tokio::task::spawn_blocking(move || {
        server.stop_with(&[
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGINT,
        ])
    });
    // Far less than the drain timeout: the second signal ended the wait.
    let status = tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the second signal did not cut the drain short")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(log.lock().unwrap().contains("second signal"));
    assert!(gone(pid) || !common::alive(pid));
    let (status, text) = in_flight.await.unwrap();
    assert_eq!(status, 503, "{text}");
    // Its answer says what stopped it: not the drain timeout, a minute away.
    assert!(
        text.contains("when a second signal cut the drain short"),
        "{text}"
    );
    assert!(!text.contains("a longer --drain-timeout"), "{text}");
}

/// The children of a `setsid` helper a function started do not outlive a
/// shutdown: the helper's whole group is killed with it, and the sweep goes
/// on until nothing is left (before, `sleep` was handed to PID 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_helpers_children_do_not_outlive_shutdown() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("helper.sh"),
        "setsid sh -c 'sleep 304 & echo $! > \"$PID_DIR/grandchild\"; wait' \
         </dev/null >/dev/null 2>&1 &\nsleep 30",
    );
    let server = TestServer::start(&api, &["--drain-timeout", "300ms", "--kill-grace", "1s"]);
    let url = server.url("/api/helper");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    let grandchild = server.pids("grandchild")[0];
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        common::wait_until(Duration::from_secs(3), || gone(grandchild)),
        "{grandchild} outlived watchdog"
    );
    let _ = in_flight.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_stops_a_warm_request_even_with_no_cgi_function_running() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    add_warm_counter(project.path());
    // One worker: the second request waits for it in the pool's queue.
    std::fs::write(
        project.path().join("watchdog.toml"),
        "[functions.\"counter.py\"]\nwarm = { protocol = \"http\", max = 1 }\n",
    )
    .unwrap();
    let server = TestServer::start(&api, &["--drain-timeout", "500ms", "--kill-grace", "200ms"]);
    let in_flight = || {
        let url = server.url("/api/counter?sleep=60");
        tokio::spawn(async move {
            let response = client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let answering = in_flight();
    assert!(server.wait_for_log("warm worker ready", Duration::from_secs(10)));
    let queued = in_flight();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log_buffer();
    let started = Instant::now();
    assert!(server.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(4));
    for (what, request) in [("answering", answering), ("queued", queued)] {
        let (status, text) = request.await.unwrap();
        assert_eq!(status, 503, "{what}: {text}");
        assert!(text.contains("shutting down"), "{what}: {text}");
    }
    // The warning counts the one running (it said running=0: warm requests
    // are not tasks of their own); the one waiting for the worker holds no
    // slot, and is not running.
    let log = log.lock().unwrap().clone();
    let warning = log
        .lines()
        .find(|line| line.contains("drain over"))
        .unwrap_or_default();
    assert!(warning.contains("running=1"), "{log}");
}

#[tokio::test]
async fn readyz_turns_503_during_the_drain_delay() {
    let (_project, api) = project_with_ok();
    let server = TestServer::start(&api, &["--drain-delay", "2s"]);
    assert_eq!(status_of(&server, "/_watchdog/readyz").await, 200);
    let before = client().get(server.url("/api/ok")).send().await.unwrap();
    assert!(before.headers().get("connection").is_none());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait_for_log("shutting down", Duration::from_secs(5)));
    assert_eq!(status_of(&server, "/_watchdog/readyz").await, 503);
    let during = client().get(server.url("/api/ok")).send().await.unwrap();
    assert_eq!(during.status(), 200, "still serving during the drain delay");
    // A kept-alive client is told to reconnect elsewhere.
    assert_eq!(during.headers()["connection"], "close");
}

#[tokio::test]
async fn built_in_errors_are_watchdog_error_pages_with_the_request_id() {
    let server = TestServer::start(&common::fixtures("cgi"), &[]);
    let c = client();
    // Each with the id it was given, or a fresh one, and text or JSON by Accept.
    let cases = [
        ("GET", "/_watchdog/nope", 404, "/_watchdog/nope"),
        ("POST", "/_watchdog/healthz", 405, "does not answer POST"),
        ("GET", "/_watchdog/cron/x", 405, "send POST"),
        ("POST", "/_watchdog/cron/x", 404, "no cron job named `x`"),
    ];
    for (method, path, status, says) in cases {
        let method: reqwest::Method = method.parse().unwrap();
        let text = c
            .request(method.clone(), server.url(path))
            .header("X-Request-Id", "builtin-1")
            .send()
            .await
            .unwrap();
        assert_eq!(text.status(), status, "{method} {path}");
        assert_eq!(text.headers()["x-request-id"], "builtin-1");
        let body = text.text().await.unwrap();
        assert!(
            body.contains(says) && body.contains("request id: builtin-1"),
            "{body}"
        );
        let json = c
            .request(method.clone(), server.url(path))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        let id = json.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: serde_json::Value = json.json().await.unwrap();
        assert_eq!(body["error"]["status"], status, "{body}");
        assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    }
    // What answers has the id too.
    let healthz = c
        .get(server.url("/_watchdog/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    assert!(healthz.headers().contains_key("x-request-id"));
}

/// `--admin-listen` sets metrics, routes and cron apart from the clients'
/// address (the operator probe found them answering whoever reached the
/// port); healthz and readyz, which a balancer's checks need, answer on both.
#[tokio::test]
async fn admin_endpoints_can_be_set_apart_from_the_clients_address() {
    let (_project, api) = project_with_ok();
    let server = TestServer::start(
        &api,
        &["--admin-listen", "127.0.0.1:0", "--drain-delay", "3s"],
    );
    let line = server.log_line("admin endpoints on http://", Duration::from_secs(5));
    let admin = line
        .split("admin endpoints on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no admin address in {line}"))
        .to_owned();
    let on_admin = |path: &str| format!("http://{admin}{path}");
    let c = client();
    assert_eq!(common::get_text(server.url("/api/ok")).await, "ok\n");
    let metrics = c.get(on_admin("/_watchdog/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("watchdog_requests_total")
    );
    let routes = c.get(on_admin("/_watchdog/routes")).send().await.unwrap();
    assert_eq!(routes.status(), 200);
    for path in ["/_watchdog/metrics", "/_watchdog/routes"] {
        let hidden = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(hidden.status(), 404, "{path}");
        let text = hidden.text().await.unwrap();
        assert!(text.contains("served on the admin address only"), "{text}");
        assert!(!text.contains(&admin), "{text}");
    }
    let cron = c
        .post(server.url("/_watchdog/cron/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(cron.status(), 404);
    for url in [
        server.url("/_watchdog/healthz"),
        on_admin("/_watchdog/healthz"),
    ] {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200, "{url}");
    }
    for url in [
        server.url("/_watchdog/readyz"),
        on_admin("/_watchdog/readyz"),
    ] {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200, "{url}");
    }
    // No function answers on the admin address.
    let function = c.get(on_admin("/api/ok")).send().await.unwrap();
    assert_eq!(function.status(), 404);
    assert!(
        function
            .text()
            .await
            .unwrap()
            .contains("this is the admin address")
    );
    // Through the drain, the admin address still answers: readyz's 503 and
    // the last metrics can be read there.
    common::signal(server.pid() as i32, nix::sys::signal::Signal::SIGTERM);
    let mut readyz = 0;
    for _ in 0..40 {
        readyz = c
            .get(on_admin("/_watchdog/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if readyz == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz, 503);
    let metrics = c.get(on_admin("/_watchdog/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// A client's X-Request-Id that is not kept (here, too long) is replaced with
/// one of watchdog's, and the log says so, once a minute at most: a balancer
/// sending such ids found them missing from every line with no word why.
#[tokio::test]
async fn a_client_id_not_kept_is_replaced_and_said_so_sparingly() {
    let (_project, api) = project_with_ok();
    let server = TestServer::start(&api, &[]);
    let c = client();
    let long = "r".repeat(200);
    for _ in 0..3 {
        let response = c
            .get(server.url("/api/ok"))
            .header("X-Request-Id", &long)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 16, "{id}");
        let _ = response.text().await;
    }
    let said = "a client's X-Request-Id was not kept, as it is 200 bytes, over the 128 kept";
    assert!(
        server.wait_for_log(said, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // All three are logged as invocations, the warning only once.
    assert!(server.wait_for_log_count("watchdog::invocation", 3, Duration::from_secs(5)));
    assert_eq!(server.log().matches(said).count(), 1, "{}", server.log());
    assert!(!server.log().contains(&long));
}

/// watchdog outlives the reader of its log: a log collector that restarts, or
/// `| head`, left it to panic at its next log line (exit 101).
#[tokio::test]
async fn watchdog_outlives_the_reader_of_its_log() {
    use std::io::BufRead;
    let (_project, api) = project_with_ok();
    let mut child = common::watchdog()
        .arg("serve")
        .arg(&api)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let (_, rest) = line.split_once("listening on http://")?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .expect("watchdog did not say where it listens");
    // The reader goes away; every log line from now on fails to be written.
    drop(lines);
    for _ in 0..3 {
        let response = client()
            .get(format!("http://{addr}/api/ok"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        assert_eq!(response.map(|r| r.status().as_u16()).ok(), Some(200));
    }
    assert!(child.try_wait().unwrap().is_none(), "watchdog exited");
    common::signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let mut status = None;
    let exited = common::wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
