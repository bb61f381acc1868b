//! Routing (CONTRACT §2) through the real server.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};

use common::{TestServer, client, copy_fixture, fixtures, raw_request};

/// Each routing fixture prints `file|SCRIPT_NAME|PATH_INFO|WATCHDOG_PARAMS`.
async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let response = client().get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn urls_mirror_file_paths_with_precedence() {
    let server = TestServer::start(&fixtures("routing"), &["--prefix", "/api"]);
    let table: &[(&str, &str)] = &[
        ("/api", "index.sh|/api||{}"),
        ("/api/", "index.sh|/api|/|{}"),
        ("/api/index.sh", "index.sh|/api/index.sh||{}"),
        ("/api/users", "users/index.sh|/api/users||{}"),
        ("/api/users/", "users/index.sh|/api/users|/|{}"),
        ("/api/users/new", "users/new.sh|/api/users/new||{}"),
        ("/api/users/new.sh", "users/new.sh|/api/users/new.sh||{}"),
        (
            "/api/users/42",
            r#"users/[id].sh|/api/users/42||{"id":"42"}"#,
        ),
        (
            "/api/users/new/edit",
            r#"users/[id]/edit.sh|/api/users/new/edit||{"id":"new"}"#,
        ),
        (
            "/api/users/a%20b",
            r#"users/[id].sh|/api/users/a b||{"id":"a b"}"#,
        ),
        (
            "/api/docs/a/b/c",
            r#"docs/[...slug].sh|/api/docs|/a/b/c|{"slug":["a","b","c"]}"#,
        ),
        ("/api/shop", r#"shop/[[...rest]].sh|/api/shop||{"rest":[]}"#),
        (
            "/api/shop/x/y",
            r#"shop/[[...rest]].sh|/api/shop|/x/y|{"rest":["x","y"]}"#,
        ),
        ("/api/shop/cart", "shop/cart.sh|/api/shop/cart||{}"),
        ("/api/plain", "plain|/api/plain||{}"),
        // An executable catch-all without an extension (a compiled binary).
        (
            "/api/bin/x/y",
            r#"bin/[...path]|/api/bin|/x/y|{"path":["x","y"]}"#,
        ),
        // Classic cgi-bin URLs: the script by its file name, then a path for
        // it (PATH_INFO), when no route takes the whole path.
        (
            "/api/users/new.sh/a/b%20c",
            "users/new.sh|/api/users/new.sh|/a/b c|{}",
        ),
        ("/api/index.sh/x", "index.sh|/api/index.sh|/x|{}"),
        // A file without an extension is named by its own URL: a path after
        // it is its to interpret too (git-http-backend's URLs).
        ("/api/plain/x/y", "plain|/api/plain|/x/y|{}"),
        // A trailing slash is the script's, as in Apache (werkzeug's root
        // redirects to it, and would loop on an empty PATH_INFO).
        ("/api/users/new.sh/", "users/new.sh|/api/users/new.sh|/|{}"),
        ("/api/plain/", "plain|/api/plain|/|{}"),
        ("/api/users/new/", "users/new.sh|/api/users/new|/|{}"),
        (
            "/api/shop/",
            r#"shop/[[...rest]].sh|/api/shop|/|{"rest":[]}"#,
        ),
        (
            "/api/users/new.sh/a/",
            "users/new.sh|/api/users/new.sh|/a/|{}",
        ),
        (
            "/api/docs/a/b/",
            r#"docs/[...slug].sh|/api/docs|/a/b/|{"slug":["a","b"]}"#,
        ),
    ];
    for (url, want) in table {
        let (status, body) = get(&server, url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(body.trim_end(), *want, "{url}");
    }
    for missing in [
        "/api/docs",
        "/api/_private/secret",
        "/api/_hidden",
        "/api/.hidden/x",
        "/api/nope",
        "/other",
        "/api/users/1/2/3",
        // Only a script named by its file, not a route's own URL or a
        // parameter's dotted value.
        "/api/users/new/x/y",
        "/api/users/v1.2/x/y",
        "/api/plain.sh/x",
    ] {
        assert_eq!(get(&server, missing).await.0, 404, "{missing}");
    }
    server.assert_no_children();
}

#[tokio::test]
async fn default_prefix_is_the_folder_name_and_slash_works() {
    let server = TestServer::start(&fixtures("routing"), &[]);
    assert_eq!(get(&server, "/routing/users/7").await.0, 200);
    // A URL outside the prefix is told the prefix, and the URL it likely
    // meant when a function answers there.
    let (status, body) = get(&server, "/users/7").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("every route here starts with /routing")
            && body.contains("try /routing/users/7"),
        "{body}"
    );
    // When none does, no URL is suggested: `/api/users/7` was told to try
    // `/routing/api/users/7`, which answered 404 too.
    let (status, body) = get(&server, "/api/users/7").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("every route here starts with /routing") && !body.contains("try "),
        "{body}"
    );
    // One under the prefix that matches nothing gets the general hint.
    let (status, body) = get(&server, "/routing/nope").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("`watchdog routes DIR` lists every route") && !body.contains("starts with"),
        "{body}"
    );
    let root = TestServer::start(&fixtures("routing"), &["--prefix", "/"]);
    assert_eq!(get(&root, "/users/7").await.0, 200);
    // At the root, SCRIPT_NAME is empty and PATH_INFO `/` (RFC 3875
    // §4.1.13): the two always make the path asked for, which werkzeug
    // relies on (with `/` and an empty PATH_INFO it redirected `/` to `/`).
    assert!(get(&root, "/").await.1.starts_with("index.sh||/|"));
    assert_eq!(
        get(&root, "/users/new/").await.1.trim_end(),
        "users/new.sh|/users/new|/|{}"
    );
}

#[tokio::test]
async fn symlinks_leading_outside_dir_are_never_served() {
    let tmp = copy_fixture("routing");
    let api = tmp.path().join("api");
    let outside = tmp.path().join("outside.sh");
    std::fs::write(
        &outside,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nOUTSIDE\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&outside, api.join("escape.sh")).unwrap();
    symlink(tmp.path(), api.join("up")).unwrap();
    symlink(api.join("users/new.sh"), api.join("inside.sh")).unwrap();
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    assert_eq!(get(&server, "/api/escape").await.0, 404);
    assert_eq!(get(&server, "/api/up/outside").await.0, 404);
    assert_eq!(get(&server, "/api/inside").await.0, 200);
    let request = b"GET /api/../outside.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(raw_request(server.addr, request).starts_with("HTTP/1.1 400"));
}

#[tokio::test]
async fn a_folder_alias_serves_beside_its_target_and_a_loop_ends() {
    let tmp = copy_fixture("routing");
    let api = tmp.path().join("api");
    // Sorts before `users`, which it must not hide.
    symlink("users", api.join("aa")).unwrap();
    symlink("..", api.join("users/loop")).unwrap();
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    assert_eq!(get(&server, "/api/users/new").await.0, 200);
    assert_eq!(get(&server, "/api/aa/new").await.0, 200);
    assert_eq!(get(&server, "/api/users/loop/users/new").await.0, 404);
    assert!(server.log().contains("symlink loop"), "{}", server.log());
}

#[tokio::test]
async fn conflicting_files_answer_500_naming_both() {
    let tmp = copy_fixture("routing");
    let api = tmp.path().join("api");
    std::fs::write(
        api.join("users/new.py"),
        "print('Content-Type: text/plain\\n\\npy')\n",
    )
    .unwrap();
    let server = TestServer::start(&api, &["--prefix", "/api"]);
    let (status, body) = get(&server, "/api/users/new").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("users/new.py") && body.contains("users/new.sh"),
        "{body}"
    );
    assert!(server.log().contains("route conflict"));
    // Each file still answers under its own extension.
    assert_eq!(get(&server, "/api/users/new.sh").await.0, 200);
}
