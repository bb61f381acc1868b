//! Resource limits (issue 4): each held by the kernel, reported in the log and in
//! metrics when hit, with nothing left behind.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client, fixtures};

fn server(flags: &[&str]) -> TestServer {
    let config = fixtures("limits.toml");
    let mut all = vec![
        "--prefix",
        "/api",
        "--config",
        config.to_str().unwrap(),
        "--timeout",
        "20s",
    ];
    all.extend_from_slice(flags);
    TestServer::start(&fixtures("limits"), &all)
}

#[tokio::test]
async fn a_fork_bomb_is_held_by_max_processes() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/forkbomb"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let forked: usize = response.text().await.unwrap().trim().parse().unwrap();
    assert!(
        forked < 20,
        "forked {forked} children despite max_processes = 20"
    );
    assert!(
        server.wait_for_log("limit_hit=\"max_processes\"", Duration::from_secs(15)),
        "{}",
        server.log()
    );
    assert!(server.log().contains("max_processes=20 by cgroup pids.max"));
    server.assert_no_children();
}

#[tokio::test]
async fn a_memory_hog_is_held_by_memory() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/memory-hog"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502, "the hog was not stopped");
    // The client is told which limit stopped it, and what to raise.
    let text = response.text().await.unwrap();
    assert!(
        text.contains("stopped by its `memory` limit") && text.contains("raise `memory`"),
        "{text}"
    );
    assert!(
        server.wait_for_log("limit_hit=\"memory\"", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let metrics = common::get_text(server.url("/_watchdog/metrics")).await;
    assert!(
        metrics.contains(r#"watchdog_limit_hits_total{route="/api/memory-hog",limit="memory"} 1"#),
        "{metrics}"
    );
    server.assert_no_children();
}

#[tokio::test]
async fn cpu_time_stops_a_spinning_function() {
    let server = server(&[]);
    let started = Instant::now();
    let response = client().get(server.url("/api/spin")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(text.contains("stopped by its `cpu_time` limit"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.wait_for_log("limit_hit=\"cpu_time\"", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // Stopped after its head: the body is cut off, not ended as if complete.
    let response = client()
        .get(server.url("/api/spin?answer-first"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (received, ended) = common::drain(response).await;
    assert!(received > 0, "the start of the answer arrives");
    assert!(
        ended.is_err(),
        "a body a limit cut off must not look complete"
    );
    // The same with stdout held open by a background child: the body ends
    // when the group is stopped, and is cut off all the same.
    let response = client()
        .get(server.url("/api/spin?held"))
        .send()
        .await
        .unwrap();
    let (received, ended) = common::drain(response).await;
    assert!(received > 0 && ended.is_err(), "{received} {ended:?}");
    // Closing stdout ends the body (RFC 3875), before the limit stops it.
    let response = client()
        .get(server.url("/api/spin?close-first"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "a whole answer\n");
    server.assert_no_children();
}

#[tokio::test]
async fn a_warm_workers_cpu_time_is_a_budget_per_request() {
    let server = server(&[]);
    // 0.4 s of CPU a request under `cpu_time = "1s"`: the worker's total passes
    // the second on the third request, which must not be stopped for it.
    let mut pids = Vec::new();
    for _ in 0..4 {
        let response = client()
            .get(server.url("/api/burner"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", server.log());
        pids.push(response.text().await.unwrap());
    }
    assert!(pids.iter().all(|pid| *pid == pids[0]), "{pids:?}");
    // One request that spins past its own budget is still stopped.
    let started = Instant::now();
    let response = client()
        .get(server.url("/api/burner?burn=30"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    // The client is told which limit stopped it, as a CGI function's is; the
    // log records the hit, and a limit doing its job is not a crash (crashes
    // back off the next start).
    let text = response.text().await.unwrap();
    assert!(text.contains("stopped by its `cpu_time` limit"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.wait_for_log("limit_hit=\"cpu_time\"", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let next = client()
        .get(server.url("/api/burner?burn=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200, "{}", server.log());
    assert_ne!(next.text().await.unwrap(), pids[0], "a new worker answers");
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
    // Killed after its head: the client's body is cut off, and the log names
    // the limit under the status the client got.
    let response = client()
        .get(server.url("/api/burner?burn=30&stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (received, ended) = common::drain(response).await;
    assert!(received > 0 && ended.is_err(), "{received} {ended:?}");
    let logged = || {
        (server.log().lines())
            .any(|line| line.contains("limit_hit=\"cpu_time\"") && line.contains("status=200"))
    };
    let waited = Instant::now();
    while !logged() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged(), "{}", server.log());
    assert!(!server.log().contains("worker crashed"), "{}", server.log());
}

#[tokio::test]
async fn open_files_caps_descriptors() {
    let server = server(&[]);
    let opened: usize = common::get_text(server.url("/api/many-files"))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(opened < 32, "opened {opened} files despite open_files = 32");
}

#[tokio::test]
async fn max_output_stops_a_chatty_function() {
    let server = server(&[]);
    let response = client()
        .get(server.url("/api/chatty"))
        .send()
        .await
        .unwrap();
    let (received, ended) = common::drain(response).await;
    assert!(
        ended.is_err(),
        "a body cut at max_output must not look complete"
    );
    assert!(received <= 1024 * 1024 + 64 * 1024, "received {received}");
    assert!(server.wait_for_log("limit_hit=\"max_output\"", Duration::from_secs(5)));
    // The log says what the client got: the 200 its head carried, cut off.
    let line = server.log_line("limit_hit=\"max_output\"", Duration::from_secs(1));
    assert!(line.contains("status=200"), "{line}");
    server.assert_no_children();
}

#[tokio::test]
async fn functions_run_as_the_user_given() {
    let server = server(&["--user", "nobody"]);
    let uid = common::get_text(server.url("/api/whoami")).await;
    assert_eq!(uid.trim(), "65534");
    let unknown = common::watchdog()
        .arg("serve")
        .arg(fixtures("limits"))
        .args(["--user", "no-such-user-here", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-user-here"));
}

#[tokio::test]
async fn limits_hold_for_functions_run_as_another_user() {
    let server = server(&["--user", "nobody"]);
    let forked: usize = common::get_text(server.url("/api/forkbomb"))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(
        forked < 20,
        "forked {forked} children as nobody despite max_processes = 20"
    );
    let hog = client()
        .get(server.url("/api/memory-hog"))
        .send()
        .await
        .unwrap();
    assert_eq!(hog.status(), 502);
    let home = common::get_text(server.url("/api/whoami")).await;
    assert_eq!(home.trim(), "65534");
    server.assert_no_children();
}

#[tokio::test]
async fn an_executable_script_without_a_shebang_uses_its_interpreter_with_limits_too() {
    let server = server(&[]);
    let text = common::get_text(server.url("/api/noshebang-limited")).await;
    assert_eq!(text, "ran under python3\n");
}
