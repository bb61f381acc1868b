//! A thousand clients at once against a slow function (issue 4): every one gets
//! 200 or 503 with Retry-After, none hangs, and healthz keeps answering.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_get_200_or_503_and_healthz_stays_up() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);

    let server = TestServer::start(
        &fixtures("cgi"),
        &[
            "--prefix",
            "/api",
            "--max-concurrency",
            "64",
            "--queue-timeout",
            "3s",
            "--timeout",
            "30s",
        ],
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let health_checks = Arc::new(AtomicUsize::new(0));
    let health = tokio::spawn({
        let (client, done, checks, url) = (
            client.clone(),
            Arc::clone(&done),
            Arc::clone(&health_checks),
            server.url("/_watchdog/healthz"),
        );
        async move {
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                assert!(
                    response.is_ok_and(|r| r.status() == 200),
                    "healthz failed under load"
                );
                slowest = slowest.max(started.elapsed());
                checks.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            slowest
        }
    });
    let started = Instant::now();
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/api/sleep-1s");
            tokio::spawn(async move {
                let response = client
                    .get(url)
                    .send()
                    .await
                    .expect("no client may hang or fail");
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let _ = response.bytes().await;
                (status, retry_after)
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for client in clients {
        match client.await.unwrap() {
            (200, _) => ok += 1,
            (503, true) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    done.store(true, Ordering::Relaxed);
    let slowest_health = health.await.unwrap();
    eprintln!(
        "1000 clients: {ok} × 200, {busy} × 503 in {:?}; {} healthz checks, slowest {:?}",
        started.elapsed(),
        health_checks.load(Ordering::Relaxed),
        slowest_health
    );
    assert_eq!(ok + busy, 1000);
    assert!(ok >= 64, "the 64 slots were not used: {ok}");
    assert!(health_checks.load(Ordering::Relaxed) >= 5);
    server.assert_no_children();
}
