//! Real CGI programs, unmodified: git's smart HTTP backend and php-cgi.
//! `scripts/test.sh` installs git and php-cgi when they are missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TestServer, client, fixtures};

fn git(cwd: &Path, home: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is installed (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "git {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn git_clone_and_push_over_smart_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, home, work) = (
        tmp.path().join("srv"),
        tmp.path().join("home"),
        tmp.path().join("work"),
    );
    for dir in [&root, &home, &work] {
        std::fs::create_dir_all(dir).unwrap();
    }
    git(
        &root,
        &home,
        &["init", "-q", "--bare", "-b", "main", "repo.git"],
    );
    git(
        &root.join("repo.git"),
        &home,
        &["config", "http.receivepack", "true"],
    );
    let server = TestServer::start(
        &fixtures("real"),
        &[
            "--prefix",
            "/api",
            "--env",
            &format!("GIT_PROJECT_ROOT={}", root.display()),
        ],
    );
    let url = server.url("/api/git/repo.git");

    git(&work, &home, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README"), "hello over CGI\n").unwrap();
    // A file larger than http.postBuffer makes git send the pack chunked.
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(work.join("big.bin"), &big).unwrap();
    git(&work, &home, &["add", "."]);
    git(&work, &home, &["commit", "-q", "-m", "first"]);
    git(
        &work,
        &home,
        &["-c", "http.postBuffer=4096", "push", "-q", &url, "main"],
    );

    git(tmp.path(), &home, &["clone", "-q", &url, "clone"]);
    let clone = tmp.path().join("clone");
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "hello over CGI\n"
    );
    assert_eq!(std::fs::read(clone.join("big.bin")).unwrap(), big);
    let log = git(&clone, &home, &["log", "--format=%s"]);
    assert_eq!(log.trim(), "first");
    server.assert_no_children();
}

#[tokio::test]
async fn php_cgi_form_post() {
    let server = TestServer::start(&fixtures("real"), &["--prefix", "/api"]);
    let response = client()
        .post(server.url("/api/form.php?q=search"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("name=Ada+Lovelace&colors%5B%5D=red&colors%5B%5D=blue")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-handled-by"], "php");
    let text = response.text().await.unwrap();
    assert_eq!(
        text,
        "method=POST\nname=Ada Lovelace\ncolors=red,blue\nquery=search\n"
    );
    // The extension-less URL reaches the same script.
    let again = client()
        .get(server.url("/api/form?q=x"))
        .send()
        .await
        .unwrap();
    assert!(again.text().await.unwrap().contains("query=x"));
    server.assert_no_children();
}
