//! The `routes` and `invoke` subcommands and start-up errors.

mod common;

use common::{fixtures, watchdog};

#[test]
fn routes_lists_functions_conflicts_and_skipped_files() {
    let output = watchdog()
        .arg("routes")
        .arg(fixtures("cgi"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("/cgi/hello") && text.contains("hello.sh"),
        "{text}"
    );
    assert!(
        text.contains("notes.txt: not executable and no known script extension"),
        "{text}"
    );
    let json = watchdog()
        .args(["routes", "--json", "--prefix", "/api"])
        .arg(fixtures("routing"))
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let patterns: Vec<&str> = value["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pattern"].as_str().unwrap())
        .collect();
    assert!(
        patterns.contains(&"/api/users/[id]") && patterns.contains(&"/api/docs/[...slug]"),
        "{patterns:?}"
    );
}

/// DIR may be left out, as CONTRACT §1's `watchdog invoke [DIR] PATH` says:
/// `./api`, or `$WATCHDOG_DIR`, as for `serve`. It was required.
#[test]
fn invoke_without_dir_uses_api_or_watchdog_dir() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    std::fs::create_dir(&api).unwrap();
    std::fs::copy(fixtures("cgi").join("hello.sh"), api.join("hello.sh")).unwrap();
    let from_project = watchdog()
        .current_dir(project.path())
        .args(["invoke", "/api/hello", "--body-only"])
        .output()
        .unwrap();
    assert!(from_project.status.success(), "{from_project:?}");
    let from_env = watchdog()
        .env("WATCHDOG_DIR", fixtures("cgi"))
        .args(["invoke", "/cgi/hello", "--body-only"])
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{from_env:?}");
    assert_eq!(from_project.stdout, from_env.stdout);
    assert!(!from_env.stdout.is_empty());
    let too_many = watchdog()
        .args(["invoke", "api", "/api/hello", "extra"])
        .output()
        .unwrap();
    assert_eq!(too_many.status.code(), Some(2));
    // Two on one side of a flag and one on the other are three too.
    let split = watchdog()
        .args(["invoke", "api", "-X", "POST", "/api/a", "/api/b"])
        .output()
        .unwrap();
    assert_eq!(split.status.code(), Some(2), "{split:?}");
    // A folder alone is DIR without its PATH, not a path for ./api.
    let folder_alone = watchdog()
        .current_dir(project.path())
        .args(["invoke", "api"])
        .output()
        .unwrap();
    assert_eq!(folder_alone.status.code(), Some(2), "{folder_alone:?}");
    let said = String::from_utf8_lossy(&folder_alone.stderr);
    assert!(
        said.contains("`api` is a folder: give the request path after it"),
        "{said}"
    );
}

#[test]
fn invoke_prints_the_response_and_fails_on_5xx() {
    let output = watchdog()
        .args(["invoke"])
        .arg(fixtures("cgi"))
        .args([
            "/cgi/echo",
            "-X",
            "POST",
            "-H",
            "X-Test: 1",
            "-d",
            "payload",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\n"), "{text}");
    assert!(
        text.contains("content-type: application/octet-stream\n"),
        "{text}"
    );
    assert!(text.ends_with("\n\npayload"), "{text}");

    // As with curl: -d alone makes a urlencoded POST; -X and -H still rule.
    let invoke_env = |extra: &[&str]| {
        let output = watchdog()
            .arg("invoke")
            .arg(fixtures("cgi"))
            .args(["/cgi/env", "--body-only"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let env = invoke_env(&["-d", "name=Ada"]);
    assert!(env.contains("REQUEST_METHOD=POST\n"), "{env}");
    assert!(
        env.contains("CONTENT_TYPE=application/x-www-form-urlencoded\n"),
        "{env}"
    );
    let env = invoke_env(&[
        "-d",
        "{}",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
    ]);
    assert!(env.contains("REQUEST_METHOD=PUT\n"), "{env}");
    assert!(env.contains("CONTENT_TYPE=application/json\n"), "{env}");
    assert!(invoke_env(&[]).contains("REQUEST_METHOD=GET\n"));

    let failed = watchdog()
        .arg("invoke")
        .arg(fixtures("cgi"))
        .arg("/cgi/garbage")
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).starts_with("HTTP/1.1 502"));
}

#[test]
fn each_subcommand_help_lists_the_flags_that_do_something_there() {
    let help = |command: &str| {
        let out = watchdog().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // `command --help` lists every flag of `listed` and none of `left_out`.
    let check = |command: &str, listed: &[&str], left_out: &[&str]| {
        let text = help(command);
        for flag in listed {
            assert!(text.contains(flag), "{command} --help lacks {flag}");
        }
        for flag in left_out {
            assert!(
                !text.contains(flag),
                "{command} --help lists {flag}, which does nothing there"
            );
        }
        text
    };
    let serve = check(
        "serve",
        &[
            "--drain-delay",
            "--queue-timeout",
            "--max-concurrency",
            "--user",
            "--timeout",
        ],
        &[],
    );
    assert!(serve.contains("On SIGTERM/SIGINT/SIGHUP"), "{serve}");
    // --max-body stays for routes: `routes --json` gives each function's.
    check(
        "routes",
        &[
            "--timeout",
            "--max-body",
            "--config",
            "--prefix",
            "--env",
            "--json",
        ],
        &[
            "--drain-delay",
            "--drain-timeout",
            "--queue-timeout",
            "--max-concurrency",
            "--kill-grace",
            "--body-idle-timeout",
            "--send-timeout",
            "--user",
        ],
    );
    check(
        "invoke",
        &[
            "--timeout",
            "--kill-grace",
            "--max-body",
            "--env",
            "--user",
            "--data",
        ],
        &[
            "--drain-delay",
            "--drain-timeout",
            "--queue-timeout",
            "--max-concurrency",
            "--send-timeout",
        ],
    );
    // Still accepted where hidden: an environment shared with `serve` may set them.
    let routes_with_drain = watchdog()
        .arg("routes")
        .arg(fixtures("cgi"))
        .args(["--drain-delay", "1s"])
        .env("WATCHDOG_QUEUE_TIMEOUT", "5s")
        .output()
        .unwrap();
    assert!(
        routes_with_drain.status.success(),
        "{}",
        String::from_utf8_lossy(&routes_with_drain.stderr)
    );
}

/// `invoke -X HEAD` prints what a server sends: no body, also when the
/// function's local redirect runs another as a GET (it printed that body).
#[test]
fn invoke_head_prints_no_body_even_after_a_local_redirect() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    std::fs::create_dir(&api).unwrap();
    common::write_script(
        &api.join("moved.sh"),
        "printf 'Location: /api/target\\n\\n'",
    );
    common::write_script(
        &api.join("target.sh"),
        "printf 'Content-Type: text/plain\\n\\nthe target body\\n'",
    );
    let invoke = |path: &str, method: &str| {
        let output = watchdog()
            .arg("invoke")
            .arg(&api)
            .args([path, "-X", method])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let got = invoke("/api/moved", "GET");
    assert!(got.ends_with("\n\nthe target body\n"), "{got}");
    for path in ["/api/moved", "/api/target"] {
        let head = invoke(path, "HEAD");
        assert!(head.starts_with("HTTP/1.1 200 OK\n"), "{head}");
        assert!(head.ends_with("\n\n"), "{path}: {head}");
        assert!(!head.contains("the target body"), "{path}: {head}");
    }
}

/// Under `--log-format json` a start-up error is a JSON event like every
/// other line: it was plain text, which a pipeline reading JSON drops.
#[test]
fn a_start_up_error_is_json_under_log_format_json() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    common::write_script(&api.join("hello.sh"), "echo");
    std::fs::write(project.path().join("watchdog.toml"), "timeout = \"soon\"\n").unwrap();
    let failed = watchdog()
        .arg("routes")
        .arg(&api)
        .args(["--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.lines().next().unwrap_or_default())
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stderr}"));
    assert_eq!(line["level"], "ERROR", "{stderr}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(error.contains("watchdog.toml:1: `timeout`"), "{stderr}");
    // The text format keeps its plain line.
    let plain = watchdog().arg("routes").arg(&api).output().unwrap();
    assert!(
        String::from_utf8_lossy(&plain.stderr).starts_with("watchdog: error: "),
        "{plain:?}"
    );
    // So too the command line's own errors, found before its parse ends:
    // a flag misspelled, a bad value from a variable.
    for (args, variable, says) in [
        (
            &["--log-format", "json", "--timout", "5s"][..],
            None,
            "'--timout'",
        ),
        (&["--timeout", "soon"][..], Some("json"), "'soon'"),
    ] {
        let mut command = watchdog();
        command.arg("serve").arg(&api).args(args);
        if let Some(format) = variable {
            command.env("WATCHDOG_LOG_FORMAT", format);
        }
        let failed = command.output().unwrap();
        assert_eq!(failed.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&failed.stderr);
        let line: serde_json::Value = serde_json::from_str(stderr.trim())
            .unwrap_or_else(|err| panic!("not one JSON line ({err}): {stderr}"));
        assert_eq!(line["level"], "ERROR", "{stderr}");
        let error = line["error"].as_str().unwrap_or_default();
        // The error alone: clap's usage line and pointer to --help left out.
        assert!(
            error.contains(says) && !error.contains("Usage:"),
            "{stderr}"
        );
    }
    let plain = watchdog()
        .args(["serve", "--timout", "5s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(
        stderr.starts_with("error: unexpected argument '--timout'"),
        "{stderr}"
    );
}

/// A script without the execute bit runs by its extension's interpreter: one
/// whose `#!` line names another (bash, a virtualenv's python), or a shell
/// script with Windows line endings, would not run as its author meant, and
/// is named as such by `routes` (and in serve's log); one whose `#!` line
/// agrees with its extension is not.
#[test]
fn routes_names_scripts_that_would_not_run_as_their_first_line_says() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    std::fs::create_dir_all(&api).unwrap();
    for (name, body) in [
        ("bashy.sh", "#!/bin/bash\narr=(a b)\n"),
        ("venv.py", "#!/opt/venv/bin/python\nprint()\n"),
        ("windows.sh", "#!/bin/sh\r\necho\r\n"),
        ("strict.sh", "#!/bin/sh -e\nfalse\necho\n"),
        ("agrees.py", "#!/usr/bin/env python3\nprint()\n"),
        ("plain.sh", "#!/bin/sh\necho\n"),
    ] {
        std::fs::write(api.join(name), body).unwrap();
    }
    let output = watchdog().arg("routes").arg(&api).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let cautions = text
        .split("may not run as meant:")
        .nth(1)
        .unwrap_or_default();
    assert!(
        cautions.contains("bashy.sh: it has no execute bit, so it runs under sh")
            && cautions.contains("`#!/opt/venv/bin/python`")
            && cautions.contains("windows.sh: it has Windows line endings")
            && cautions.contains("strict.sh: it has no execute bit, so it runs under sh (by its extension) without the options"),
        "{text}"
    );
    assert!(
        !cautions.contains("agrees.py") && !cautions.contains("plain.sh"),
        "{text}"
    );
}

#[test]
fn bad_usage_exits_2_with_a_clear_message() {
    let missing = watchdog()
        .args(["serve", "/no/such/dir", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/dir"));
    let bad_duration = watchdog()
        .arg("serve")
        .arg(fixtures("cgi"))
        .args(["--timeout", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad_duration.status.code(), Some(2));
    let env_flag = watchdog()
        .arg("serve")
        .arg(fixtures("cgi"))
        .env("WATCHDOG_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(env_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&env_flag.stderr).contains("not-an-address"));
}

#[tokio::test]
async fn sigterm_exits_0_and_flags_can_come_from_the_environment() {
    let server = common::TestServer::start_with(&fixtures("cgi"), &[], |command| {
        command
            .env("WATCHDOG_TIMEOUT", "5s")
            // Misspelled: set, read by nothing, and said so.
            .env("WATCHDOG_MAX_BODDY", "1k")
            // systemd's, for a service with WatchdogSec=: no mistake.
            .env("WATCHDOG_USEC", "30000000");
    });
    let response = common::client()
        .get(server.url("/cgi/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(server.log().contains("timeout=5s"));
    let log = server.log();
    assert!(
        log.contains("WATCHDOG_MAX_BODDY is set, but watchdog reads no variable of that name")
            && log.contains("did you mean WATCHDOG_MAX_BODY?"),
        "{log}"
    );
    assert!(!log.contains("WATCHDOG_USEC"), "{log}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// `invoke`'s folder and path may stand on either side of a flag, as
/// `serve`'s may (a CGI veteran's `invoke cgi-bin --prefix /cgi-bin
/// /cgi-bin/x` was refused as a positional given twice); more than the two is
/// refused with what was given.
#[test]
fn invoke_takes_its_folder_and_path_around_flags() {
    let split = watchdog()
        .arg("invoke")
        .arg(fixtures("cgi"))
        .args(["--prefix", "/cgi-bin", "/cgi-bin/hello"])
        .output()
        .unwrap();
    assert!(split.status.success(), "{split:?}");
    assert!(String::from_utf8_lossy(&split.stdout).starts_with("HTTP/1.1 200"));
    let three = watchdog()
        .arg("invoke")
        .arg(fixtures("cgi"))
        .args(["-X", "POST", "/cgi/a", "/cgi/b"])
        .output()
        .unwrap();
    assert_eq!(three.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&three.stderr);
    assert!(
        stderr.contains("takes a folder and a request path, and got 3"),
        "{stderr}"
    );
}
