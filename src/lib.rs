//! # watchdog
//!
//! Turns a folder of executables into an HTTP API: each request runs its function
//! CGI-style, one process per request (see `README.md` and the contract).
//!
//! # Layout
//!
//! ```text
//! main.rs               thin: parse, init logs, dispatch, exit 0/1/2
//! cli.rs                clap: serve | routes | invoke, every flag with WATCHDOG_*
//! config.rs             validated Settings: flags > env > file > defaults
//!   config/file.rs        watchdog.toml, vercel.json, .env; file:line:key errors
//!   config/functions.rs   per-function sections merged by glob specificity
//! commands/             one file per subcommand
//! routes.rs             RouteTable: URL → function
//!   routes/discover.rs    the one walk of DIR: functions and skipped files with reasons
//!   routes/pattern.rs     `[id]`, `[...path]`, `[[...path]]`
//!   routes/table.rs       the trie and its precedence rules
//!   routes/path.rs        request path decoding and safety (`..`, NUL, %2F)
//!   routes/reload.rs      live reload: watch DIR, settle, swap the table
//!   routes/code_fingerprint.rs  versions of the code a warm worker may have imported
//!   routes/setting_warnings.rs  valid settings that do not do what they seem to
//! server.rs             App state, axum router, graceful drain
//!   server/listener.rs    the accept loop, HTTP/1 on hyper: head deadline, header caps
//!   server/connection_threads.rs  one single-threaded runtime per core; each
//!                         connection (and the functions it starts) stays on one
//!   server/handler.rs     request → route → slot → invoke → local redirects
//!   server/builtin.rs     /_watchdog/ endpoints
//!   server/error.rs       every error status, text or JSON by Accept
//!   server/request_id.rs  X-Request-Id
//!   server/host.rs        the Host a function sees: one, valid, or the target's
//!   server/transfer_coding.rs  request bodies: chunked once or not at all
//! invoke.rs             the seam: trait Invoker, Invocation, Reply, InvokeError
//!   invoke/dispatch.rs    warm functions to the pool, the rest to CGI
//!   invoke/cgi.rs         spawn and drive one CGI process
//!   invoke/cgi/environment.rs   the RFC 3875 environment
//!   invoke/cgi/spawn.rs   the command, clean env, process group, spawn errors
//!   invoke/cgi/interpreter.rs   a script's interpreter, found on the function's PATH
//!   invoke/cgi/pipe_chunks.rs   stdout/stderr read in whole chunks
//!   invoke/cgi/stdin.rs   request body → stdin, in its own task
//!   invoke/envelope.rs    the CGI header-block parser (pure)
//!   invoke/request_body.rs  Content-Length or de-chunked spill
//!   invoke/output_log.rs  function stderr, worker stdout → log lines
//!   invoke/body_fault.rs  uploads that stall or break off: 408/400, never the function's fault
//!   invoke/hop_by_hop.rs  connection-level headers a proxied answer drops
//!   invoke/forwarded.rs   the X-Forwarded-* headers a warm worker gets
//!   invoke/pool.rs        keep-warm pools: acquire, release, supervise
//!   invoke/pool/policy.rs   backoff, crash window, warm defaults (pure)
//!   invoke/pool/worker.rs   one worker process: spawn, output, stop
//!   invoke/pool/http.rs     HTTP-on-$PORT workers: readiness, proxying
//!   invoke/pool/lambda.rs   the AWS Lambda Runtime API, Function URL events
//!   invoke/node.rs        the embedded Node adapter for handler modules
//! limits.rs             resource limits and --user, applied before exec
//!   limits/cgroup.rs      per-invocation cgroups (pids, memory)
//! process.rs            OS processes
//!   process/spawn.rs      the lean spawner: vfork-style clone, stdio slots
//!   process/env_block.rs  envp: a function's variables built once, a request's on top
//!   process/pipe.rs       standard-stream pipes, grown within a budget
//!   process/group.rs      ProcessGroup: killpg, kill on drop
//!   process/exit_watch.rs a leader's exit and its reaping (a pidfd only when waited for)
//!   process/reaper.rs     subreaper, group reaping, the orphan sweeper
//!   process/isolation.rs  at start: inherited fds close on exec, not dumpable
//! cron.rs               scheduled invocations ([[cron]], vercel.json crons)
//! observability.rs      one log event per invocation, Prometheus metrics
//! shutdown.rs           SIGTERM/SIGINT
//! ```

pub mod cli;
pub mod commands;
pub mod config;
pub mod cron;
pub mod invoke;
pub mod limits;
pub mod observability;
pub mod process;
pub mod routes;
pub mod server;
pub mod shutdown;
