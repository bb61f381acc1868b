//! Configuration (CONTRACT §6, issue 3): watchdog.toml, vercel.json, .env.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, client, fixtures, watchdog, write_script};

fn sleeper(project: &Path, name: &str, seconds: &str) {
    write_script(
        &project.join("api").join(name),
        &format!("sleep {seconds}\nprintf 'Content-Type: text/plain\\n\\nslept\\n'"),
    );
}

#[tokio::test]
async fn per_function_timeouts_from_watchdog_toml_and_vercel_json() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    sleeper(dir, "slow.sh", "3");
    sleeper(dir, "patient.sh", "1.5");
    sleeper(dir, "vercel-slow.sh", "3");
    std::fs::write(
        dir.join("watchdog.toml"),
        "timeout = \"1s\"\nkill_grace = \"500ms\"\n\n[functions.\"patient.sh\"]\ntimeout = \"10s\"\n\n[functions.\"vercel-*.sh\"]\nkill_grace_is_not_here = false\n",
    )
    .unwrap();
    // That last key is a mistake on purpose: start-up must fail and name it.
    let bad = watchdog()
        .arg("serve")
        .arg(dir.join("api"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("watchdog.toml:8") && stderr.contains("kill_grace_is_not_here"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("watchdog.toml"),
        "timeout = \"1s\"\nkill_grace = \"500ms\"\n\n[functions.\"patient.sh\"]\ntimeout = \"10s\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("vercel.json"),
        r#"{ "functions": { "api/vercel-slow.sh": { "maxDuration": 30 }, "api/slow.sh": { "maxDuration": 60 } },
            "rewrites": [{ "source": "/old", "destination": "/api/slow" }] }"#,
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    // What vercel.json asks for that watchdog does not do is said at start.
    let unapplied = server.log_line("not applied here", Duration::from_secs(5));
    assert!(unapplied.contains("keys=rewrites"), "{unapplied}");
    let c = client();
    let patient = c.get(server.url("/api/patient")).send().await.unwrap();
    assert_eq!(
        patient.status(),
        200,
        "the section's 10s beats the global 1s"
    );
    let vercel = c.get(server.url("/api/vercel-slow")).send().await.unwrap();
    assert_eq!(
        vercel.status(),
        200,
        "vercel.json maxDuration 30 beats the global 1s"
    );
    // watchdog.toml has no section for slow.sh, so vercel.json's 60s applies: any
    // per-function value beats the server-wide one.
    let started = Instant::now();
    let slow = c.get(server.url("/api/slow")).send().await.unwrap();
    assert_eq!(
        slow.status(),
        200,
        "vercel.json maxDuration applies per function"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    drop(server);

    // Without vercel.json the global 1s holds for slow.sh.
    std::fs::remove_file(dir.join("vercel.json")).unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    let started = Instant::now();
    let slow = client().get(server.url("/api/slow")).send().await.unwrap();
    assert_eq!(slow.status(), 504);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // A flag still beats the file's global value.
    drop(server);
    let server = TestServer::start(&dir.join("api"), &["--timeout", "5s"]);
    assert_eq!(
        client()
            .get(server.url("/api/slow"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_openfaas_classic_function_runs_unchanged() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    // A function written for OpenFaaS's classic watchdog: reads Http_* variables,
    // prints its whole answer to stdout, signals "not found" with exit code 3.
    write_script(
        &dir.join("api/legacy/lookup.sh"),
        r#"if [ "$Http_Query" = "id=missing" ]; then echo '{"error":"not found"}'; exit 3; fi
body=$(cat)
printf '{"method":"%s","query":"%s","path":"%s","agent":"%s","body":"%s","proxy":"%s"}\n' "$Http_Method" "$Http_Query" "$Http_Path" "$Http_User_Agent" "$body" "${Http_Proxy-unset}""#,
    );
    write_script(
        &dir.join("api/legacy/chatty.sh"),
        "head -c 4096 /dev/zero | tr '\\0' x",
    );
    std::fs::write(
        dir.join("watchdog.toml"),
        "[functions.\"legacy/*\"]\noutput = \"raw\"\ncontent_type = \"application/json\"\nenv_style = \"openfaas\"\nexit_status = { 2 = 400, 3 = 404 }\n\n[functions.\"legacy/chatty.sh\"]\nmax_output = \"1KiB\"\n",
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    let c = client();
    let ok = c
        .post(server.url("/api/legacy/lookup?id=7"))
        .header("User-Agent", "faas-cli")
        // Headers that would spell the request's own variables do not override them.
        .header("Path", "/spoofed")
        .header("Method", "SPOOFED")
        .header("Query", "id=spoofed")
        // httpoxy: no proxy variable of any case comes from a client's header.
        .header("Proxy", "http://attacker.example:8080")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "application/json");
    let json: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["query"], "id=7");
    assert_eq!(json["path"], "/api/legacy/lookup");
    assert_eq!(json["agent"], "faas-cli");
    assert_eq!(json["body"], "hi");
    assert_eq!(json["proxy"], "unset");
    let missing = c
        .get(server.url("/api/legacy/lookup?id=missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "{\"error\":\"not found\"}\n");
    // HEAD: the GET's status and length, no body.
    let head = c
        .head(server.url("/api/legacy/lookup?id=missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    assert_eq!(head.headers()["content-length"], "22");
    // Raw output is held in memory until exit, so it is bounded by max_output.
    let chatty = c
        .get(server.url("/api/legacy/chatty"))
        .send()
        .await
        .unwrap();
    assert_eq!(chatty.status(), 502);
    assert!(chatty.text().await.unwrap().contains("1024 bytes"));
}

#[tokio::test]
async fn env_comes_from_dotenv_config_and_sections_in_order() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    write_script(
        &dir.join("api/env.sh"),
        "printf 'Content-Type: text/plain\\n\\n'; env | sort",
    );
    write_script(
        &dir.join("api/special/env.sh"),
        "printf 'Content-Type: text/plain\\n\\n'; env | sort",
    );
    std::fs::write(
        dir.join(".env"),
        "FROM_DOTENV=1\nOVERRIDDEN=dotenv\nCRON_SECRET=s3cret\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("watchdog.toml"),
        "env = { OVERRIDDEN = \"config\", STAGE = \"dev\" }\n\n[functions.\"special/*\"]\nenv = { STAGE = \"special\" }\n",
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &["--env", "FROM_FLAG=yes"]);
    let c = client();
    let plain = common::get_text_with(&c, server.url("/api/env")).await;
    for line in [
        "FROM_DOTENV=1",
        "OVERRIDDEN=config",
        "STAGE=dev",
        "FROM_FLAG=yes",
        "CRON_SECRET=s3cret",
    ] {
        assert!(plain.lines().any(|l| l == line), "{line} missing:\n{plain}");
    }
    let special = common::get_text_with(&c, server.url("/api/special/env")).await;
    assert!(special.lines().any(|l| l == "STAGE=special"), "{special}");
}

#[tokio::test]
async fn max_concurrency_one_serialises_a_function() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    sleeper(dir, "deploy.sh", "0.5");
    std::fs::write(
        dir.join("watchdog.toml"),
        "[functions.\"deploy.sh\"]\nmax_concurrency = 1\n",
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    let started = Instant::now();
    let c = client();
    let requests = (0..3).map(|_| {
        let c = c.clone();
        let url = server.url("/api/deploy");
        tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "ran in parallel: {:?}",
        started.elapsed()
    );
    // One that waits past the queue timeout is told which limit was full.
    let impatient = TestServer::start(&dir.join("api"), &["--queue-timeout", "100ms"]);
    let first = tokio::spawn(c.get(impatient.url("/api/deploy")).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = c.get(impatient.url("/api/deploy")).send().await.unwrap();
    assert_eq!(second.status(), 503);
    // The queue timeout as given, not rounded to whole seconds; a
    // Retry-After of at least one.
    assert_eq!(second.headers()["retry-after"], "1");
    let text = second.text().await.unwrap();
    assert!(
        text.contains("its `max_concurrency`")
            && text.contains("in the function's watchdog.toml section")
            && text.contains("the queue wait passed 100ms"),
        "{text}"
    );
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

/// A function whose own timeout is shorter than the queue's, and runs out
/// while its request waits for a slot, gets the 504 of a timeout that names
/// the wait: it got a 503 that said the (longer) queue wait had passed, with
/// that wait as its Retry-After.
#[tokio::test]
async fn a_timeout_that_runs_out_in_the_queue_is_a_504_that_says_so() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    sleeper(dir, "slow.sh", "2");
    sleeper(dir, "quick.sh", "0");
    std::fs::write(
        dir.join("watchdog.toml"),
        "[functions.\"quick.sh\"]\ntimeout = \"300ms\"\n",
    )
    .unwrap();
    let server = TestServer::start(
        &dir.join("api"),
        &["--max-concurrency", "1", "--queue-timeout", "10s"],
    );
    let c = client();
    let slow = tokio::spawn(c.get(server.url("/api/slow")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = c.get(server.url("/api/quick")).send().await.unwrap();
    assert_eq!(quick.status(), 504);
    assert!(quick.headers().get("retry-after").is_none());
    let text = quick.text().await.unwrap();
    assert!(
        text.contains("quick.sh: timed out after 300ms waiting for a concurrency slot")
            && text.contains("--max-concurrency"),
        "{text}"
    );
    // It has its log line and counts as a timeout, as any invocation does; a
    // request the queue turned away left no line.
    let line = server.log_line("file=quick.sh", Duration::from_secs(5));
    assert!(line.contains("status=504 timed_out=true"), "{line}");
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains("watchdog_timeouts_total{route=\"/api/quick\"} 1"),
        "{metrics}"
    );
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

/// `watchdog routes ARGS` on a project holding `api/reports/daily.sh`,
/// `api/tool.py` and `config` as its watchdog.toml.
fn routes_of(config: &str, args: &[&str]) -> std::process::Output {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    sleeper(dir, "reports/daily.sh", "0");
    sleeper(dir, "tool.py", "0");
    std::fs::write(dir.join("watchdog.toml"), config).unwrap();
    watchdog()
        .arg("routes")
        .args(args)
        .arg(dir.join("api"))
        .output()
        .unwrap()
}

/// `watchdog.toml` and `.env` put inside DIR (the project made into `api/`)
/// are read by nothing: `routes` says to move them up, where it said to
/// `chmod +x` the one and called the other private.
#[test]
fn project_files_inside_dir_are_named_as_misplaced() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    sleeper(project.path(), "tool.py", "0");
    std::fs::write(api.join("watchdog.toml"), "timeout = \"5s\"\n").unwrap();
    std::fs::write(api.join(".env"), "TOKEN=x\n").unwrap();
    let output = watchdog().arg("routes").arg(&api).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for file in ["watchdog.toml", ".env"] {
        let line = text
            .lines()
            .find(|line| line.contains(file))
            .unwrap_or_else(|| panic!("{file}: {text}"));
        assert!(line.contains("is read beside DIR, not in it"), "{text}");
        assert!(line.contains("move it up one folder"), "{text}");
    }
    assert!(!text.contains("chmod +x"), "{text}");
    // Given with --config, the one in DIR is read: not misplaced.
    let output = watchdog()
        .arg("routes")
        .arg(&api)
        .arg("--config")
        .arg(api.join("watchdog.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.contains("watchdog.toml"))
        .unwrap();
    assert!(line.contains("given with --config"), "{text}");
}

/// A `"**"` section of defaults has fewer wildcards than `"deep/**/*.sh"`,
/// so it wins (CONTRACT §6) and the narrower-looking section's timeout is in
/// effect nowhere: that is named at start, where it passed in silence.
#[test]
fn a_key_overridden_for_all_its_files_is_named() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    sleeper(project.path(), "deep/x/s.sh", "0");
    std::fs::write(
        project.path().join("watchdog.toml"),
        "[functions.\"**\"]\ntimeout = \"1s\"\n\n[functions.\"deep/**/*.sh\"]\ntimeout = \"3s\"\nmax_body = \"1MiB\"\n",
    )
    .unwrap();
    let output = watchdog().arg("routes").arg(&api).output().unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("overridden for every file"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(r#"section=functions."deep/**/*.sh""#),
        "{log}"
    );
    assert!(lines[0].contains("key=\"timeout\""), "{log}");
    assert!(lines[0].contains(r#"by=functions."**""#), "{log}");
    assert!(lines[0].contains("watchdog.toml:4"), "{log}");
}

/// `.env.local` and its kin (where `vercel env pull` puts a project's
/// secrets) are named as not read, where they were passed over in silence;
/// a template to copy is not.
#[test]
fn env_files_other_than_dot_env_are_named_as_unread() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    sleeper(project.path(), "tool.py", "0");
    std::fs::write(project.path().join(".env.local"), "TOKEN=x\n").unwrap();
    std::fs::write(project.path().join(".env.example"), "TOKEN=\n").unwrap();
    std::fs::write(project.path().join(".env.keys"), "DOTENV_PRIVATE_KEY=k\n").unwrap();
    let output = watchdog().arg("routes").arg(&api).output().unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    let line = log
        .lines()
        .find(|line| line.contains("not read"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("files=.env.local"), "{line}");
    assert!(!line.contains(".env.example"), "{line}");
    assert!(!line.contains(".env.keys"), "{line}");
}

/// The configuration files are read at start-up only: an edit while serving
/// is said to need a restart, and a broken one is named before the restart
/// fails on it. Both used to pass without a word.
#[tokio::test]
async fn an_edit_to_a_configuration_file_while_serving_is_reported() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(
        &api.join("ok.sh"),
        "printf 'Content-Type: text/plain\\n\\nok\\n'",
    );
    let toml = project.path().join("watchdog.toml");
    std::fs::write(&toml, "timeout = \"5s\"\n").unwrap();
    let server = TestServer::start(&api, &[]);
    // Another file beside DIR is none of its business.
    std::fs::write(project.path().join("app.log"), "written as it runs\n").unwrap();
    std::fs::write(&toml, "timeout = \"6s\"\n").unwrap();
    let changed = "a configuration file changed; it is read at start-up only";
    assert!(
        server.wait_for_log(changed, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // An Apache or nginx operator's reflex, `kill -HUP`, would stop the server.
    assert!(
        server.log().contains("SIGHUP stops it as SIGTERM does"),
        "{}",
        server.log()
    );
    std::fs::write(&toml, "timeout = \"6s\"\nenv = { STAGE =\n").unwrap();
    let line = server.log_line("would not start", Duration::from_secs(5));
    assert!(line.contains("watchdog.toml:2"), "{line}");
    // Mended; then `.env`, judged with the whole configuration as a start
    // would read it.
    std::fs::write(&toml, "timeout = \"7s\"\n").unwrap();
    assert!(
        server.wait_for_log_count(changed, 2, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    std::fs::write(project.path().join(".env"), "TOKEN=x\n").unwrap();
    assert!(
        server.wait_for_log_count(changed, 3, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    let last = log.lines().rfind(|line| line.contains(changed));
    assert!(last.is_some_and(|line| line.contains(".env")), "{log}");
    assert!(!server.log().contains("app.log"), "{}", server.log());
    // The server runs on with what it started with.
    assert_eq!(
        client()
            .get(server.url("/api/ok"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A name set in more than one layer (the file's `env`, `--env`, a
/// section's) is listed once: it was listed once per layer.
#[test]
fn routes_lists_each_environment_name_once() {
    let config = "env = { TOKEN = \"a\", STAGE = \"dev\" }\n\
         [functions.\"tool.py\"]\nenv = { TOKEN = \"b\" }\n";
    let json = routes_of(
        config,
        &["--json", "--env", "STAGE=prod", "--env", "EXTRA=1"],
    );
    let table: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let tool = table["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|route| route["file"] == "tool.py")
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        tool["settings"]["env"],
        serde_json::json!(["STAGE", "TOKEN", "EXTRA"]),
        "{table}"
    );
}

#[test]
fn routes_shows_effective_settings() {
    let config = "[functions.\"reports/*.sh\"]\ntimeout = \"2m\"\nmemory = \"64MiB\"\ncpu_time = \"3s\"\n\
         env = { REPORT_TOKEN = \"t0ps3cret\" }\nwarm = { protocol = \"http\", max = 2 }\n";
    let output = routes_of(config, &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("/api/reports/daily")
            && text.contains("timeout=2m")
            && text.contains("reports/*.sh"),
        "{text}"
    );
    // Everything in effect, the environment by name only.
    for shown in [
        "memory=67108864",
        "cpu_time=3s",
        "warm=http(min=0,max=2,",
        "env=REPORT_TOKEN",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    assert!(!text.contains("t0ps3cret"), "{text}");
    // The columns line up, however long a value (`executable (else python3)`).
    let column = text.lines().next().unwrap().find("SETTINGS").unwrap();
    for line in text.lines().skip(1).take_while(|l| !l.is_empty()) {
        assert_eq!(line.find("timeout="), Some(column), "{text}");
    }
    let json = routes_of(config, &["--json"]);
    let table: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let settings = &table["routes"][0]["settings"];
    // Typed, as the keys that are always there are.
    assert_eq!(settings["cpu_time"], "3s", "{settings}");
    assert_eq!(settings["memory"], 67_108_864, "{settings}");
    assert_eq!(
        settings["env"],
        serde_json::json!(["REPORT_TOKEN"]),
        "{settings}"
    );
    assert_eq!(
        settings["warm"],
        serde_json::json!({ "protocol": "http", "min": 0, "max": 2, "idle_timeout": "5m", "max_requests": null }),
        "{settings}"
    );
    assert!(!json.stdout.windows(9).any(|w| w == b"t0ps3cret"));
}

#[test]
fn a_section_that_matches_no_file_is_named_with_what_to_write() {
    let output = routes_of(
        "[functions.\"reports/*.sh\"]\ntimeout = \"2m\"\n\n\
         [functions.\"api/reports/daily.sh\"]\ntimeout = \"3m\"\n\n\
         [functions.\"reports/daily\"]\ntimeout = \"4m\"\n",
        &[],
    );
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("matches no file"))
        .collect();
    assert_eq!(warnings.len(), 2, "{log}");
    let with_dir = warnings
        .iter()
        .find(|l| l.contains("api/reports/daily.sh"))
        .unwrap();
    assert!(
        with_dir.contains("watchdog.toml:4") && with_dir.contains(r#"write "reports/daily.sh""#),
        "{with_dir}"
    );
    assert!(
        warnings
            .iter()
            .any(|l| l.contains(r#"functions."reports/daily""#))
    );
}

#[tokio::test]
async fn a_cron_jobs_secret_is_its_functions_and_a_failed_run_is_a_warning() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    write_script(
        &dir.join("api/cleanup.sh"),
        "echo \"$HTTP_AUTHORIZATION\" >> \"$PID_DIR/cron-runs\"\nprintf 'Content-Type: text/plain\\n\\ncleaned\\n'",
    );
    std::fs::write(
        dir.join("watchdog.toml"),
        "[functions.\"cleanup.sh\"]\nenv = { CRON_SECRET = \"fsec\" }\n\n\
         [[cron]]\nname = \"cleanup\"\npath = \"/api/cleanup?full\"\nschedule = \"* * * * * *\"\n\n\
         [[cron]]\nname = \"typo\"\npath = \"/api/claenup\"\nschedule = \"* * * * * *\"\n",
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    let runs = server.pid_dir.path().join("cron-runs");
    assert!(
        common::wait_until(Duration::from_secs(4), || std::fs::read_to_string(&runs)
            .is_ok_and(|t| !t.is_empty())),
        "the every-second job did not run"
    );
    // The function checks the secret its own section gives it: the schedule
    // sends that one.
    let sent = std::fs::read_to_string(&runs).unwrap();
    assert!(sent.starts_with("Bearer fsec\n"), "{sent}");
    let refused = client()
        .post(server.url("/_watchdog/cron/cleanup"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // A job whose path no function answers is named at start-up, and each of
    // its runs is a warning, not an info line a `warn` log would hide.
    assert!(
        server
            .log()
            .contains("no function answers this cron job's path")
    );
    assert!(
        server.wait_for_log("cron job failed name=typo", Duration::from_secs(4)),
        "{}",
        server.log()
    );
    let failed = server.log_line("cron job failed name=typo", Duration::from_secs(1));
    assert!(
        failed.contains("WARN") && failed.contains("status=404"),
        "{failed}"
    );
}

#[tokio::test]
async fn vercel_json_crons_on_one_path_are_all_kept_under_names_of_their_own() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    sleeper(dir, "cleanup.sh", "0");
    sleeper(dir, "report.sh", "0");
    std::fs::write(
        dir.join("vercel.json"),
        r#"{"crons":[{"path":"/api/cleanup","schedule":"0 5 * * *"},
                     {"path":"/api/cleanup","schedule":"0 17 * * *"},
                     {"path":"/api/report","schedule":"0 6 * * *"}]}"#,
    )
    .unwrap();
    // A [[cron]] that took the name vercel.json's first job would get, and
    // one that replaces the report's entry by its path.
    std::fs::write(
        dir.join("watchdog.toml"),
        "[[cron]]\nname = \"api-cleanup\"\npath = \"/api/report?weekly\"\nschedule = \"0 7 * * 1\"\n\n\
         [[cron]]\nname = \"daily-report\"\npath = \"/api/report\"\nschedule = \"0 8 * * *\"\n",
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    assert!(
        server.wait_for_log("name=api-cleanup-3", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    let scheduled: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cron job scheduled"))
        .collect();
    assert_eq!(scheduled.len(), 4, "{log}");
    for (name, schedule) in [
        ("api-cleanup", "0 7 * * 1"),
        ("daily-report", "0 8 * * *"),
        ("api-cleanup-2", "0 5 * * *"),
        ("api-cleanup-3", "0 17 * * *"),
    ] {
        assert!(
            scheduled
                .iter()
                .any(|l| l.contains(&format!("name={name} ")) && l.contains(schedule)),
            "{name}: {log}"
        );
    }
}

#[tokio::test]
async fn cron_jobs_run_on_schedule_and_on_demand_with_the_secret() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    write_script(
        &dir.join("api/cleanup.sh"),
        "echo \"$HTTP_AUTHORIZATION|$HTTP_USER_AGENT\" >> \"$PID_DIR/cron-runs\"\nprintf 'Content-Type: text/plain\\n\\ncleaned\\n'",
    );
    std::fs::write(dir.join(".env"), "CRON_SECRET=s3cret\n").unwrap();
    std::fs::write(
        dir.join("watchdog.toml"),
        "[[cron]]\nname = \"cleanup\"\npath = \"/api/cleanup\"\nschedule = \"* * * * * *\"\n",
    )
    .unwrap();
    let server = TestServer::start(&dir.join("api"), &[]);
    let runs = server.pid_dir.path().join("cron-runs");
    assert!(
        common::wait_until(Duration::from_secs(4), || std::fs::read_to_string(&runs)
            .is_ok_and(|t| t.lines().count() >= 2)),
        "the every-second job did not run twice"
    );
    let first = std::fs::read_to_string(&runs).unwrap();
    assert!(first.starts_with("Bearer s3cret|watchdog-cron/"), "{first}");
    // Running a job now hands back its answer, so it takes the secret too; a
    // caller without it learns nothing, not even the job names.
    for token in [None, Some("Bearer wrong")] {
        let mut request = client().post(server.url("/_watchdog/cron/cleanup"));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        let text = refused.text().await.unwrap();
        assert!(
            text.contains("CRON_SECRET") && !text.contains("cleaned"),
            "{text}"
        );
    }
    let now = client()
        .post(server.url("/_watchdog/cron/cleanup"))
        .header("Authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(now.status(), 200);
    assert_eq!(now.text().await.unwrap(), "cleaned\n");
    let unknown = client()
        .post(server.url("/_watchdog/cron/nope"))
        .header("Authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("cleanup"));
    // Without a secret, jobs run on request from this machine, but not for a
    // browser page.
    // A CRON_SECRET in watchdog's own environment is not the functions' (so
    // not the jobs'): said at start, as the trigger is then open locally.
    std::fs::remove_file(dir.join(".env")).unwrap();
    let open = TestServer::start_with(&dir.join("api"), &[], |command| {
        command.env("CRON_SECRET", "shellsecret");
    });
    let warning = open.log_line(
        "CRON_SECRET is set in watchdog's own environment",
        Duration::from_secs(5),
    );
    assert!(warning.contains("jobs=cleanup"), "{warning}");
    // An empty one counts as none, as in the functions' environment.
    let empty = TestServer::start_with(&dir.join("api"), &[], |command| {
        command.env("CRON_SECRET", "");
    });
    assert!(empty.wait_for_log("cron job scheduled", Duration::from_secs(5)));
    assert!(
        !empty
            .log()
            .contains("CRON_SECRET is set in watchdog's own environment"),
        "{}",
        empty.log()
    );
    drop(empty);
    let local = client()
        .post(open.url("/_watchdog/cron/cleanup"))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    let page = client()
        .post(open.url("/_watchdog/cron/cleanup"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("with curl or a script"));
    // Nor for a client a reverse proxy on this machine passed along.
    for (name, value) in [
        ("X-Forwarded-For", "8.8.8.8"),
        ("Forwarded", "for=8.8.8.8"),
        ("X-Real-IP", "8.8.8.8"),
        ("Via", "1.1 edge"),
        ("CF-Connecting-IP", "8.8.8.8"),
        ("True-Client-IP", "8.8.8.8"),
        ("X-Client-IP", "8.8.8.8"),
        ("Fastly-Client-IP", "8.8.8.8"),
    ] {
        let proxied = client()
            .post(open.url("/_watchdog/cron/cleanup"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(proxied.status(), 403, "{name}");
        assert!(proxied.text().await.unwrap().contains("through a proxy"));
    }

    std::fs::write(
        dir.join("watchdog.toml"),
        "[[cron]]\nname = \"bad\"\npath = \"/api/cleanup\"\nschedule = \"every day\"\n",
    )
    .unwrap();
    let bad = watchdog()
        .arg("serve")
        .arg(dir.join("api"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("watchdog.toml:1") && stderr.contains("every day"),
        "{stderr}"
    );
}

/// A config file that cannot be read is named with what to check, not
/// located at a line 0 it does not have.
#[test]
fn a_config_file_that_cannot_be_read_is_named_without_a_line() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("api")).unwrap();
    let missing = project.path().join("missing.toml");
    let bad = watchdog()
        .arg("serve")
        .arg(project.path().join("api"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let named = format!("{}: cannot read it", missing.display());
    assert!(stderr.contains(&named), "{stderr}");
    assert!(stderr.contains("check the path (--config)"), "{stderr}");
}

#[test]
fn a_zero_idle_or_send_timeout_is_refused_by_name() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("api")).unwrap();
    for key in ["body_idle_timeout", "send_timeout"] {
        std::fs::write(
            project.path().join("watchdog.toml"),
            format!("{key} = \"0s\"\n"),
        )
        .unwrap();
        let bad = watchdog()
            .arg("serve")
            .arg(project.path().join("api"))
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains(key), "{stderr}");
    }
    // The flags refuse a zero by their own parser, naming the flag.
    for flag in ["--timeout", "--body-idle-timeout", "--send-timeout"] {
        let bad = watchdog()
            .arg("serve")
            .arg(project.path().join("api"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--config",
                "/dev/null",
                flag,
                "0s",
            ])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains("more than 0"),
            "{stderr}"
        );
    }
}

#[test]
fn durations_past_the_clock_are_refused_at_start_up() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("api")).unwrap();
    let start = |flags: &[&str]| {
        let out = watchdog()
            .arg("serve")
            .arg(project.path().join("api"))
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = start(&["--timeout", "300000000000y"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--timeout") && stderr.contains("longer than"),
        "{stderr}"
    );
    std::fs::write(
        project.path().join("vercel.json"),
        r#"{ "functions": { "api/x.sh": { "maxDuration": 1e300 } } }"#,
    )
    .unwrap();
    let (code, stderr) = start(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("maxDuration"), "{stderr}");
    // A vercel.json cron's schedule is located by its line (it said line 0).
    std::fs::write(
        project.path().join("vercel.json"),
        "{\n  \"crons\": [\n    { \"path\": \"/api/a\", \"schedule\": \"0 5 * * *\" },\n    { \"path\": \"/api/b\", \"schedule\": \"every day\" }\n  ]\n}\n",
    )
    .unwrap();
    let (code, stderr) = start(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("vercel.json:4") && stderr.contains("every day"),
        "{stderr}"
    );
}

#[test]
fn a_bad_setting_is_named_where_it_was_written() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("api")).unwrap();
    let start = |flags: &[&str], env: &[(&str, &str)]| {
        let out = watchdog()
            .arg("serve")
            .arg(project.path().join("api"))
            .args(flags)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // In the file: located by line, as every other key of it is.
    std::fs::write(
        project.path().join("watchdog.toml"),
        "timeout = \"5s\"\nlisten = \"nope\"\n",
    )
    .unwrap();
    let stderr = start(&[], &[]);
    assert!(
        stderr.contains("watchdog.toml:2") && stderr.contains("`listen`"),
        "{stderr}"
    );
    // The admin address the same way, in the file or by its flag.
    std::fs::write(
        project.path().join("watchdog.toml"),
        "timeout = \"5s\"\nadmin_listen = \"nope\"\n",
    )
    .unwrap();
    let stderr = start(&[], &[]);
    assert!(
        stderr.contains("watchdog.toml:2") && stderr.contains("`nope` is not an address"),
        "{stderr}"
    );
    let stderr = start(&["--config", "/dev/null", "--admin-listen", "nope"], &[]);
    assert!(
        stderr.contains("--admin-listen nope: not an address"),
        "{stderr}"
    );
    let same = ["--config", "/dev/null", "--listen", "127.0.0.1:3999"];
    let stderr = start(
        &[&same[..], &["--admin-listen", "127.0.0.1:3999"]].concat(),
        &[],
    );
    assert!(stderr.contains("the same as the clients'"), "{stderr}");
    std::fs::write(
        project.path().join("watchdog.toml"),
        "user = \"no-such-user-here\"\n",
    )
    .unwrap();
    let stderr = start(&[], &[]);
    assert!(
        stderr.contains("watchdog.toml:1") && stderr.contains("no-such-user-here"),
        "{stderr}"
    );
    // A value of the file a flag replaces is not checked: it is not used.
    std::fs::write(
        project.path().join("watchdog.toml"),
        "user = \"no-such-user-here\"\nlisten = \"nope\"\n",
    )
    .unwrap();
    let replaced = watchdog()
        .arg("routes")
        .arg(project.path().join("api"))
        .args(["--user", "nobody"])
        .env("PORT", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&replaced.stderr);
    assert!(
        stderr.contains("`listen`") && !stderr.contains("no-such-user-here"),
        "{stderr}"
    );
    let server = TestServer::start_with(&project.path().join("api"), &["--user", "nobody"], |_| {});
    server.terminate();
    // From the environment: by the variable, not by a flag nobody typed.
    let no_file = ["--config", "/dev/null"];
    let stderr = start(&no_file, &[("WATCHDOG_TIMEOUT", "bogus")]);
    assert!(
        stderr.contains("WATCHDOG_TIMEOUT") && !stderr.contains("'--timeout"),
        "{stderr}"
    );
    let stderr = start(&no_file, &[("WATCHDOG_LISTEN", "nope")]);
    assert!(stderr.contains("WATCHDOG_LISTEN=nope"), "{stderr}");
    let stderr = start(&no_file, &[("WATCHDOG_USER", "no-such-user-here")]);
    assert!(
        stderr.contains("WATCHDOG_USER=no-such-user-here"),
        "{stderr}"
    );
    // A typed flag is named as typed, whatever the environment holds.
    let typed = ["--config", "/dev/null", "--listen", "nope"];
    let stderr = start(&typed, &[("WATCHDOG_LISTEN", "127.0.0.1:0")]);
    assert!(stderr.contains("--listen nope"), "{stderr}");
    let typed = ["--config", "/dev/null", "--timeout=bogus"];
    let stderr = start(&typed, &[("WATCHDOG_TIMEOUT", "5s")]);
    assert!(stderr.contains("'--timeout"), "{stderr}");
}

#[test]
fn a_variable_named_like_a_request_headers_is_warned_of() {
    let routes = |env: &str| {
        let out = watchdog()
            .arg("routes")
            .arg(fixtures("cgi"))
            .args(["--config", "/dev/null", "--env", env])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = routes("HTTP_X_TENANT=acme");
    assert!(
        stderr.contains("HTTP_X_TENANT") && stderr.contains("X-Tenant"),
        "{stderr}"
    );
    // No header ever becomes HTTP_PROXY (httpoxy): an outbound proxy setting.
    let stderr = routes("HTTP_PROXY=http://127.0.0.1:3128");
    assert!(!stderr.contains("request header"), "{stderr}");
    // Nor the body's headers: they reach a function as CONTENT_* or not at all.
    let stderr = routes("HTTP_TRANSFER_ENCODING=x");
    assert!(!stderr.contains("request header"), "{stderr}");
    // Nor does any header become a name with lower-case letters.
    let stderr = routes("HTTP_x_lower=1");
    assert!(!stderr.contains("request header"), "{stderr}");
}

/// `--trusted-proxy` replaces the file's `trusted_proxies` rather than adding
/// to them: trust is widened only where it is written.
#[tokio::test]
async fn the_trusted_proxy_flag_replaces_the_files_list() {
    let project = tempfile::tempdir().unwrap();
    let api = project.path().join("api");
    write_script(&api.join("hello.sh"), "echo");
    std::fs::write(
        project.path().join("watchdog.toml"),
        "trusted_proxies = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let settings = |flags: &[&str]| {
        let server = TestServer::start(&api, flags);
        server.log_line("settings dir=", Duration::from_secs(5))
    };
    let from_file = settings(&[]);
    assert!(
        from_file.contains("trusted_proxies=10.0.0.0/8"),
        "{from_file}"
    );
    let replaced = settings(&["--trusted-proxy", "127.0.0.1"]);
    assert!(
        replaced.contains("trusted_proxies=127.0.0.1/32"),
        "{replaced}"
    );
    assert!(!replaced.contains("10.0.0.0/8"), "{replaced}");
}
