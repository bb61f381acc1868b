//! Test harness: the real `watchdog` binary on an ephemeral port, talked to over HTTP.
//!
//! `TestServer` starts `watchdog serve --listen 127.0.0.1:0`, reads the bound address
//! from its log, keeps the log for assertions, and on drop stops the server by PID
//! (SIGTERM, then SIGKILL). Helpers check that no process a test started survives.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

pub fn watchdog() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_watchdog"));
    // Hermetic: nothing from the developer's environment configures the server.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WATCHDOG_") || name == "PORT" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// A private folder functions may write pids into (`PID_DIR`).
    pub pid_dir: tempfile::TempDir,
}

impl TestServer {
    /// Serves `dir` with extra flags; `PID_DIR` is passed to every function.
    pub fn start(dir: &Path, flags: &[&str]) -> Self {
        Self::start_with(dir, flags, |_| {})
    }

    pub fn start_with(dir: &Path, flags: &[&str], tweak: impl FnOnce(&mut Command)) -> Self {
        let pid_dir = tempfile::tempdir().expect("temp dir");
        let mut command = watchdog();
        command
            .arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--env")
            .arg(format!("PID_DIR={}", pid_dir.path().display()))
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tweak(&mut command);
        let mut child = command.spawn().expect("start watchdog");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        let pid = child.id();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[watchdog {pid}] {line}");
                if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = addr_tx.send(addr);
                    sent = true;
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("watchdog logged its address")
            .parse()
            .expect("a socket address");
        Self {
            child,
            addr,
            log,
            pid_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.log().contains(needle))
    }

    /// Waits until the log contains `needle` exactly `times` times.
    pub fn wait_for_log_count(&self, needle: &str, times: usize, within: Duration) -> bool {
        wait_until(within, || self.log().matches(needle).count() == times)
    }

    /// Waits for the first log line that contains `needle` and returns it (empty
    /// if none came in time).
    pub fn log_line(&self, needle: &str, within: Duration) -> String {
        self.wait_for_log(needle, within);
        self.log()
            .lines()
            .find(|line| line.contains(needle))
            .unwrap_or_default()
            .to_owned()
    }

    /// Reads a pid file a function wrote into `PID_DIR`.
    pub fn pids(&self, name: &str) -> Vec<i32> {
        let path = self.pid_dir.path().join(name);
        let mut text = String::new();
        let found = wait_until(Duration::from_secs(5), || {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            text.ends_with('\n')
        });
        assert!(found, "{name} was not written");
        text.split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect()
    }

    /// Asserts that the server has no child processes left (zombies included),
    /// allowing a moment for reaping to finish.
    pub fn assert_no_children(&self) {
        let ok = wait_until(Duration::from_secs(5), || children(self.pid()).is_empty());
        assert!(
            ok,
            "watchdog still has children: {:?}",
            describe(&children(self.pid()))
        );
    }

    /// The log as it grows, for a test to read after [`Self::terminate`].
    pub fn log_buffer(&self) -> Arc<Mutex<String>> {
        Arc::clone(&self.log)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.stop_with(&[libc_sigterm()])
    }

    /// Sends `signals`, each once the log shows the first was received and
    /// more than a second has passed, and waits for the exit status.
    pub fn stop_with(mut self, signals: &[nix::sys::signal::Signal]) -> std::process::ExitStatus {
        for (n, sig) in signals.iter().enumerate() {
            if n > 0 {
                assert!(
                    self.wait_for_log("signal received", Duration::from_secs(5)),
                    "the first signal was not received"
                );
                // A signal within a second of the first is taken for the
                // same keypress (src/shutdown.rs).
                std::thread::sleep(Duration::from_millis(1500));
            }
            signal(self.child.id() as i32, *sig);
        }
        let status = self.child.wait().expect("wait for watchdog");
        std::mem::forget(self);
        status
    }
}

impl Drop for TestServer {
    /// Checks the promise of "no zombie, ever" after every test, then stops the
    /// server by PID: SIGTERM, then SIGKILL.
    /// The server is stopped before the check fails, so a failing test
    /// leaves no watchdog running behind it.
    fn drop(&mut self) {
        let mut zombies = None;
        if !std::thread::panicking() {
            let pid = self.pid();
            let clean = wait_until(Duration::from_secs(5), || {
                !children(pid).iter().any(|&c| is_zombie(c))
            });
            if !clean {
                zombies = Some(describe(&children(pid)));
            }
        }
        self.stop();
        if let Some(zombies) = zombies {
            panic!("zombies left behind: {zombies:?}");
        }
    }
}

impl TestServer {
    /// SIGTERM, then SIGKILL after 5 s.
    fn stop(&mut self) {
        signal(self.child.id() as i32, libc_sigterm());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn libc_sigterm() -> nix::sys::signal::Signal {
    nix::sys::signal::Signal::SIGTERM
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Waits until a log kept past its server's end ([`TestServer::log_buffer`])
/// contains `needle`.
pub fn log_shows(log: &Arc<Mutex<String>>, needle: &str, within: Duration) -> bool {
    wait_until(within, || log.lock().unwrap().contains(needle))
}

pub fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Direct children of `pid`, from every thread's children list.
pub fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `pid (state) cmdline` for messages.
fn describe(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            format!("{p}: {}", stat.split(')').next_back().unwrap_or("").trim())
        })
        .collect()
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Whether a process is gone entirely (not even a zombie).
pub fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// GETs `path` from `server` and reads the answer as JSON.
pub async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    let response = client().get(server.url(path)).send().await.unwrap();
    response.json().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

/// Sends raw bytes and returns the raw response (for paths a client library would
/// normalise).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Sends the head of a POST with a `length`-byte body and its first `sent` bytes,
/// leaving the rest of the upload to the caller.
pub fn start_upload(
    addr: SocketAddr,
    path: &str,
    request_id: &str,
    length: usize,
    sent: usize,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\nX-Request-Id: {request_id}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![b'x'; sent]).unwrap();
    stream
}

/// Keeps an upload going, steadily but slowly: `pieces` of 10 bytes, `every`
/// apart, or until the server stops taking them.
pub fn trickle(stream: &mut TcpStream, pieces: usize, every: Duration) {
    for _ in 0..pieces {
        std::thread::sleep(every);
        if stream.write_all(&[b'x'; 10]).is_err() {
            break;
        }
    }
}

/// Reads what the server sends on `stream` until it closes the connection (at
/// most 10 s).
pub fn read_answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends a GET of `path` with `request_id` and reads the answer until `needle`
/// shows (at most 5 s), leaving the connection open for the caller to drop.
pub fn get_until(addr: SocketAddr, path: &str, request_id: &str, needle: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: {request_id}\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let mut buf = [0; 1024];
        let n = stream.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    stream
}

/// Sends `request` and reads its JSON answer (for requests with a method,
/// headers or a body).
pub async fn send_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Copies a fixture folder into a fresh temp dir (for tests that change files).
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(fixtures(name))
        .arg(tmp.path().join("api"))
        .status()
        .expect("cp");
    assert!(status.success());
    tmp
}

/// Writes an executable `#!/bin/sh` script atomically (a watcher never sees it
/// half written).
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a file path")).unwrap();
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes each `(path below dir, text)`, making folders as needed.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (relative, text) in files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("a file path")).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// GETs `url` until it answers `expected` (a reload, a recycled worker), and
/// fails with the last answer if that takes longer than `within`.
pub async fn wait_for_text(url: String, expected: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let text = get_text(url.clone()).await;
        if text == expected {
            return;
        }
        assert!(
            started.elapsed() < within,
            "still answering {text:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A body read chunk by chunk, with when its first chunk and its end arrived.
pub struct Streamed {
    pub first: Vec<u8>,
    pub rest: Vec<u8>,
    /// Between the first chunk and the end.
    pub spread: Duration,
}

/// GETs `url` and returns the body as text, whatever the status.
pub async fn get_text(url: String) -> String {
    get_text_with(&client(), url).await
}

/// [`get_text`] on a given client, to keep its kept-alive connection (and so
/// the connection thread that serves it) across requests.
pub async fn get_text_with(client: &reqwest::Client, url: String) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// Reads a whole body, timing its first chunk against its end.
pub async fn read_streamed(mut response: reqwest::Response) -> Streamed {
    let first = response
        .chunk()
        .await
        .unwrap()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let first_at = Instant::now();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    Streamed {
        first,
        rest,
        spread: first_at.elapsed(),
    }
}

/// Reads a body to its end; returns the bytes received and whether it ended
/// cleanly (a cut-off body ends with an error).
pub async fn drain(mut response: reqwest::Response) -> (usize, Result<(), reqwest::Error>) {
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => return (received, Ok(())),
            Err(err) => return (received, Err(err)),
        }
    }
}

/// GETs `path` and reads its body as far as it goes: the status, the bytes,
/// and whether the body was cut off before its end.
pub async fn read_as_far_as_it_goes(server: &TestServer, path: &str) -> (u16, String, bool) {
    let mut response = client().get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return (status, String::from_utf8_lossy(&body).into(), false),
            Err(_) => return (status, String::from_utf8_lossy(&body).into(), true),
        }
    }
}

/// The sum of the values of the Prometheus series whose lines start with
/// `series` (a name, or a name and the start of its labels): a counter
/// registered at 0 before its first event counts as none.
pub fn metric_sum(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The environment a function printed as `NAME=value` lines (`env.sh`).
pub fn env_map(body: &str) -> std::collections::BTreeMap<String, String> {
    body.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
