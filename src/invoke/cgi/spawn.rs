//! Starting a CGI function: the command line, a clean environment, its own process
//! group, and an error that says what to fix when it cannot start.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::Stdio;

use crate::invoke::InvokeError;
use crate::process::reaper;
use crate::routes::Runner;

const ENOEXEC: i32 = nix::errno::Errno::ENOEXEC as i32;
const E2BIG: i32 = nix::errno::Errno::E2BIG as i32;

/// Spawns the function as the leader of a new process group with a clean
/// environment, stdout and stderr piped, stdin piped only when there is a body.
/// A file without an execute bit, or whose exec fails with ENOEXEC (a script without
/// `#!`), runs through the interpreter its extension names.
///
/// # Errors
/// [`InvokeError::Spawn`] naming the file and the cause, or
/// [`InvokeError::HeadersTooLarge`] when the environment exceeds the kernel's limit.
pub fn spawn(
    path: &Path,
    relative: &str,
    runner: &Runner,
    env: &[(OsString, OsString)],
    has_body: bool,
    prepare: impl Fn(&mut tokio::process::Command),
    run_as: Option<&str>,
) -> Result<(tokio::process::Child, u32), InvokeError> {
    let adapter = if runner.node_module {
        Some(
            crate::invoke::node::adapter_path().map_err(|err| InvokeError::Spawn {
                file: relative.to_owned(),
                cause: format!("cannot write the Node adapter: {err}"),
                hint: "watchdog needs a writable temporary folder (TMPDIR)".into(),
            })?,
        )
    } else {
        None
    };
    let attempt = |interpreter: Option<&str>| {
        let mut command = match (&adapter, interpreter) {
            (Some(adapter), _) => {
                let mut command = tokio::process::Command::new("node");
                command.arg(adapter).arg(path);
                command
            }
            (None, Some(program)) => {
                let mut command = tokio::process::Command::new(program);
                command.arg(path);
                command
            }
            (None, None) => tokio::process::Command::new(path),
        };
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(path.parent().unwrap_or(Path::new("/")))
            .process_group(0)
            .stdin(if has_body {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        prepare(&mut command);
        reaper::spawn_leader(|| {
            let child = command.spawn()?;
            // A child that was just spawned and not yet waited on always has a pid.
            let pid = child
                .id()
                .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
            Ok((child, pid))
        })
    };
    let direct = if runner.executable {
        attempt(None)
    } else {
        Err(io::Error::from_raw_os_error(ENOEXEC))
    };
    if runner.node_module {
        return attempt(None).map_err(|err| describe(&err, path, relative, Some("node"), run_as));
    }
    match direct {
        Err(err) if err.raw_os_error() == Some(ENOEXEC) && runner.interpreter.is_some() => {
            attempt(runner.interpreter)
                .map_err(|err| describe(&err, path, relative, runner.interpreter, run_as))
        }
        other => other.map_err(|err| describe(&err, path, relative, None, run_as)),
    }
}

/// Says why a spawn failed and what to do about it.
fn describe(
    err: &io::Error,
    path: &Path,
    relative: &str,
    interpreter: Option<&str>,
    run_as: Option<&str>,
) -> InvokeError {
    let spawn_error = |cause: String, hint: String| InvokeError::Spawn {
        file: relative.to_owned(),
        cause,
        hint,
    };
    if err.raw_os_error() == Some(E2BIG) {
        return InvokeError::HeadersTooLarge;
    }
    if let Some(program) = interpreter
        && err.kind() == io::ErrorKind::NotFound
    {
        return spawn_error(
            format!("interpreter `{program}` was not found on PATH"),
            format!("install {program}, or make the file executable with a `#!` line"),
        );
    }
    match err.kind() {
        io::ErrorKind::NotFound => spawn_error(
            "the file or the interpreter named on its `#!` line was not found".into(),
            format!("check the first line of {}", path.display()),
        ),
        io::ErrorKind::PermissionDenied => match run_as {
            Some(user) => spawn_error(
                format!("permission denied for user {user}"),
                format!(
                    "the file and every folder above it must be readable and searchable by {user} \
                     (e.g. `chmod o+rx` on the folders and on {})",
                    path.display()
                ),
            ),
            None => spawn_error(
                "permission denied".into(),
                format!("`chmod +x {}`", path.display()),
            ),
        },
        _ if err.raw_os_error() == Some(ENOEXEC) => spawn_error(
            "not a program the system can run (a script without a `#!` line?)".into(),
            "add a `#!` line such as `#!/bin/sh`, or use a known extension (.sh .py .pl .rb .php)"
                .into(),
        ),
        _ => spawn_error(err.to_string(), "see watchdog's log".into()),
    }
}
