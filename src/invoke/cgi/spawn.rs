//! Starting a function: the command line, a clean environment, its own process
//! group, the lean spawner or std's, and an error that says what to fix when it
//! cannot start.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use tokio::net::unix::pipe;

use super::environment::Environment;
use super::interpreter;
use crate::invoke::InvokeError;
use crate::limits::{Limiter, Plan};
use crate::process::spawn::{CStringArray, Exec};
use crate::process::{self, ExitWatch, reaper};
use crate::routes::Runner;
use crate::routes::shebang::{EnvRequest, Shebang};

const ENOEXEC: i32 = nix::errno::Errno::ENOEXEC as i32;
const E2BIG: i32 = nix::errno::Errno::E2BIG as i32;
const ETXTBSY: i32 = nix::errno::Errno::ETXTBSY as i32;

/// A CGI function just started: its leader, with the watch that reaps it, and
/// watchdog's ends of its pipes.
pub struct Started {
    pub pid: u32,
    pub exit: ExitWatch,
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

/// Starts a CGI function as the leader of a new process group with a clean
/// environment. A function without resource limits or `--user` takes the lean
/// spawner ([`crate::process::spawn`]), exec'd directly or by the interpreter
/// its extension names; a Node module, resource limits or `--user` take std's
/// spawner (fork, with `limiter`'s work before exec). Either way the leader is
/// watchdog's to reap, through the returned [`ExitWatch`].
///
/// # Errors
/// As [`spawn`].
#[allow(clippy::too_many_arguments)]
pub fn spawn_cgi(
    path: &Path,
    relative: &str,
    runner: &Runner,
    env: &Environment,
    has_body: bool,
    limiter: &Limiter,
    plan: &Plan,
) -> Result<Started, InvokeError> {
    let run_as = limiter.run_as.as_ref().map(|user| user.name.as_str());
    let fail = |err: io::Error| describe(&err, path, relative, None, run_as);
    let (stdout, child_stdout) = process::pipe::pipe().map_err(fail)?;
    let (stderr, child_stderr) = process::pipe::pipe().map_err(fail)?;
    let (stdin, child_stdin) = if has_body {
        let (read, write) = process::pipe::pipe().map_err(fail)?;
        (Some(write), Some(read))
    } else {
        (None, None)
    };
    let child_fds = ChildFds {
        stdin: child_stdin,
        stdout: child_stdout,
        stderr: child_stderr,
    };
    let lean = !runner.node_module && !limiter.needs_child_setup(plan);
    let spawn = |interpreter: Option<&'static str>| {
        if lean {
            match spawn_lean(path, interpreter, env, &child_fds) {
                // A standard stream of watchdog is closed: std's spawner copes.
                Err(err) if err.kind() == io::ErrorKind::Unsupported => {
                    spawn_std(path, interpreter, runner, env, &child_fds, limiter, plan)
                }
                other => other,
            }
        } else {
            spawn_std(path, interpreter, runner, env, &child_fds, limiter, plan)
        }
    };
    let pid = direct_or_by_interpreter(path, relative, runner, run_as, spawn)?;
    // The child has its copies; the parent's must close, or stdout never ends.
    drop(child_fds);
    // It refuses only a pid no spawn returns (0, or beyond `i32`): there is no
    // child to stop then, and signalling such a "pid" would reach watchdog's own
    // group (0) or another one (negative).
    let exit = ExitWatch::new(pid).map_err(|err| {
        reaper::group_finished(pid);
        fail(err)
    })?;
    // watchdog's ends go non-blocking here, after the spawn, because the pipes
    // were created blocking for the child's sake.
    let receiver = |fd: OwnedFd| {
        process::pipe::set_nonblocking(&fd)?;
        pipe::Receiver::from_owned_fd_unchecked(fd)
    };
    let sender = |fd: OwnedFd| {
        process::pipe::set_nonblocking(&fd)?;
        pipe::Sender::from_owned_fd_unchecked(fd)
    };
    let pipes = (|| -> io::Result<_> {
        Ok((
            stdin.map(sender).transpose()?,
            receiver(stdout)?,
            receiver(stderr)?,
        ))
    })();
    match pipes {
        Ok((stdin, stdout, stderr)) => Ok(Started {
            pid,
            exit,
            stdin,
            stdout,
            stderr,
        }),
        Err(err) => {
            exit.kill();
            reaper::group_finished(pid);
            Err(fail(err))
        }
    }
}

/// The child's ends of its standard streams, closed in watchdog once it runs.
struct ChildFds {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// The lean path: `path` exec'd by [`crate::process::spawn`], directly or by
/// its `interpreter` (found on the function's PATH).
fn spawn_lean(
    path: &Path,
    interpreter: Option<&'static str>,
    env: &Environment,
    fds: &ChildFds,
) -> io::Result<u32> {
    let script = c_string(path.as_os_str())?;
    let cwd = c_string(path.parent().unwrap_or(Path::new("/")).as_os_str())?;
    let envp = env.envp()?;
    let run = |program: &CStr, argv: &CStringArray| {
        let exec = Exec {
            program,
            argv,
            envp: &envp,
            cwd: &cwd,
            stdin: fds.stdin.as_ref().map(AsFd::as_fd),
            stdout: fds.stdout.as_fd(),
            stderr: fds.stderr.as_fd(),
        };
        reaper::spawn_leader_pid(|| process::spawn::spawn(&exec))
    };
    let Some(name) = interpreter else {
        let mut argv = CStringArray::with_capacity(1);
        argv.push_borrowed(&script);
        return run(&script, &argv);
    };
    // argv[0] is the name, as execvp (and std) would pass it.
    let mut argv = CStringArray::with_capacity(2);
    argv.push_bytes(name.as_bytes().to_vec())?;
    argv.push_borrowed(&script);
    let path_var = env.get("PATH");
    let found = interpreter::find(name, path_var)?;
    match run(&c_string(found.as_os_str())?, &argv) {
        // The remembered file has gone (uninstalled, or moved on PATH): search
        // again, once.
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            interpreter::forget(name);
            let again = interpreter::find(name, path_var)?;
            if again == found {
                return Err(err);
            }
            run(&c_string(again.as_os_str())?, &argv)
        }
        other => other,
    }
}

fn c_string(text: &OsStr) -> io::Result<CString> {
    CString::new(text.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte in path"))
}

/// std's spawner (posix_spawn, or fork when `limiter` has work before exec). The
/// std `Child` is dropped at once: dropping it neither kills nor waits, and the
/// leader is reaped by its [`ExitWatch`] like the lean path's.
fn spawn_std(
    path: &Path,
    interpreter: Option<&str>,
    runner: &Runner,
    env: &Environment,
    fds: &ChildFds,
    limiter: &Limiter,
    plan: &Plan,
) -> io::Result<u32> {
    let folder = path.parent().unwrap_or(Path::new("/"));
    let mut command = command(path, interpreter, runner, &env.pairs(), folder)?;
    let stdin = match &fds.stdin {
        Some(fd) => Stdio::from(fd.try_clone()?),
        None => Stdio::null(),
    };
    command
        .stdin(stdin)
        .stdout(Stdio::from(fds.stdout.try_clone()?))
        .stderr(Stdio::from(fds.stderr.try_clone()?));
    limiter.apply(plan, &mut command);
    reaper::spawn_leader_pid(|| Ok(command.spawn()?.id()))
}

/// The command line for `path`: the file itself, its interpreter, or Node with
/// watchdog's adapter; a clean environment, `cwd` as the working directory, its
/// own process group.
fn command(
    path: &Path,
    interpreter: Option<&str>,
    runner: &Runner,
    env: &[(OsString, OsString)],
    cwd: &Path,
) -> io::Result<std::process::Command> {
    let mut command = if runner.node_module {
        let adapter = crate::invoke::node::adapter_path().map_err(|err| {
            // An unsafe TMPDIR says what to do itself; a plain I/O error not.
            let hint = if err.kind() == io::ErrorKind::Other {
                ""
            } else {
                " (watchdog needs a TMPDIR it can write to)"
            };
            io::Error::other(format!("cannot write the Node adapter: {err}{hint}"))
        })?;
        let mut command = std::process::Command::new("node");
        command.arg(adapter).arg(path);
        command
    } else if let Some(program) = interpreter {
        let mut command = std::process::Command::new(program);
        command.arg(path);
        command
    } else {
        std::process::Command::new(path)
    };
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .process_group(0);
    Ok(command)
}

/// A function's working directory: its folder (CONTRACT §3), except for a Node
/// handler module, which runs in the project root (DIR's parent, where
/// watchdog.toml and vercel.json sit), as under `vercel dev`: handlers read
/// their files with `path.join(process.cwd(), "data", ...)`, as Vercel's docs
/// show.
fn working_dir<'a>(path: &'a Path, relative: &str, runner: &Runner) -> &'a Path {
    let folder = path.parent().unwrap_or(Path::new("/"));
    if !runner.node_module {
        return folder;
    }
    let depth = Path::new(relative).components().count();
    path.ancestors().nth(depth + 1).unwrap_or(folder)
}

/// Starts a warm worker: like [`spawn_cgi`], but the child is tokio's (its output
/// and exit come through tokio-process-stream), stdout and stderr piped.
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
    prepare: impl Fn(&mut std::process::Command),
    run_as: Option<&str>,
) -> Result<(tokio::process::Child, u32), InvokeError> {
    let cwd = working_dir(path, relative, runner);
    let attempt = |interpreter: Option<&str>| {
        let mut command = command(path, interpreter, runner, env, cwd)?;
        prepare(&mut command);
        let mut command = tokio::process::Command::from(command);
        command
            .stdin(if has_body {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        reaper::spawn_leader(|| {
            let child = command.spawn()?;
            // A child that was just spawned and not yet waited on always has a pid.
            let pid = child
                .id()
                .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
            Ok((child, pid))
        })
    };
    direct_or_by_interpreter(path, relative, runner, run_as, attempt)
}

/// Starts the function with `start`: itself when it is executable (or a
/// handler module, which `start` runs under node), else, or when the system
/// cannot run it ([`runs_by_interpreter_instead`]), by its extension's
/// interpreter; the failure said as [`describe`] says it. One rule for CGI
/// invocations and warm workers alike.
fn direct_or_by_interpreter<T>(
    path: &Path,
    relative: &str,
    runner: &Runner,
    run_as: Option<&str>,
    start: impl Fn(Option<&'static str>) -> io::Result<T>,
) -> Result<T, InvokeError> {
    let direct = if runner.executable || runner.node_module {
        start(None)
    } else {
        Err(io::Error::from_raw_os_error(ENOEXEC))
    };
    match direct {
        Err(err)
            if !runner.node_module
                && runner.interpreter.is_some()
                && runs_by_interpreter_instead(&err, path, relative) =>
        {
            if let Some(empty) = empty_file(path, relative) {
                return Err(empty);
            }
            start(runner.interpreter)
                .map_err(|err| describe(&err, path, relative, runner.interpreter, run_as))
        }
        other => other.map_err(|err| {
            let interpreter = runner.node_module.then_some("node");
            describe(&err, path, relative, interpreter, run_as)
        }),
    }
}

/// What a script saved with Windows line endings gets: the system looked for
/// an interpreter whose name ends in `\r` (`/bin/sh\r`), or `env` did
/// (`python3\r`, exit 127).
pub fn windows_line_endings(relative: &str) -> InvokeError {
    InvokeError::Spawn {
        file: relative.to_owned(),
        cause: "its `#!` line ends in a carriage return (the file has Windows line endings), so \
                the system looks for an interpreter whose name ends in one"
            .into(),
        hint: format!(
            "give {relative} Unix line endings: `sed -i 's/\\r$//' {relative}` or `dos2unix {relative}`"
        ),
    }
}

/// Whether a file with a script extension that could not be exec'd runs by
/// its extension's interpreter instead: it has no `#!` line (ENOEXEC), or it
/// has lost its execute bit since the route table was walked (EACCES with no
/// `x` in its mode: an editor that saves a new file and sets its mode after,
/// a `chmod -x`), as a script without one is run at the next walk anyway.
/// Other refusals (a folder `--user` may not enter) are reported as they are.
/// A JavaScript file that lost its bit is left alone: at the next walk it is a
/// handler module, not a CGI script for node.
fn runs_by_interpreter_instead(err: &io::Error, path: &Path, relative: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    err.raw_os_error() == Some(ENOEXEC)
        || (err.kind() == io::ErrorKind::PermissionDenied
            && !is_module(relative)
            && std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o111 == 0))
}

/// [`InvokeError::FileEmpty`] for a file that is empty where its interpreter
/// would run it, or where the system found it no program: a save in place met
/// between its truncation and its write. An interpreter would run it as a
/// program that does nothing ("wrote nothing", a 502 that blames the code).
/// Checked only on those paths: one `stat` for a script without a `#!` line
/// or an execute bit, whose interpreter's start costs a thousand times more.
fn empty_file(path: &Path, relative: &str) -> Option<InvokeError> {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.len() == 0)
        .then(|| InvokeError::FileEmpty {
            file: relative.to_owned(),
        })
}

/// Whether the file's first line is a `#!` line that ends in `\r\n`: a script
/// saved on Windows. Read only when a function has failed to start.
pub fn shebang_ends_in_cr(path: &Path) -> bool {
    let mut head = [0u8; 256];
    let head = crate::routes::discover::read_head(path, &mut head);
    head.starts_with(b"#!")
        && head
            .iter()
            .position(|&byte| byte == b'\n')
            .is_some_and(|end| end > 0 && head[end - 1] == b'\r')
}

/// The file's `#!` line without the `#!`, trimmed ([`Shebang`]); none for a
/// file without one. Read only when a function has failed to start.
fn shebang_line(path: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let head = crate::routes::discover::read_head(path, &mut head);
    Shebang::of(head).map(|shebang| shebang.line.to_owned())
}

/// What a `#!` line that runs `env` asks it for, when env cannot have found
/// it: exit 127 from such a script is then env's, not the script's. Either
/// the program is not on the function's PATH (`#!/usr/bin/env ruby` with no
/// ruby), or the kernel handed env the rest of the line as one name
/// (`#!/usr/bin/env python3 -u` looks for a program called `python3 -u`).
/// None when env would have found its program: 127 then came from the script
/// (a command it ran was not found).
pub fn env_line_failure(
    path: &Path,
    relative: &str,
    path_var: Option<&OsStr>,
) -> Option<InvokeError> {
    let mut head = [0u8; 256];
    let head = crate::routes::discover::read_head(path, &mut head);
    let shebang = Shebang::of(head)?;
    let spawn_error = |cause: String, hint: String| InvokeError::Spawn {
        file: relative.to_owned(),
        cause,
        hint,
    };
    let name = match shebang.env_request()? {
        EnvRequest::OneArgument(argument) => {
            return Some(spawn_error(
                format!(
                    "its `#!` line gives env one argument, `{argument}` (the system passes everything after the interpreter as one), and env found no program of that name"
                ),
                format!(
                    "write the first line of {relative} as `#!{} -S {argument}`, or leave the options out",
                    shebang.program
                ),
            ));
        }
        EnvRequest::Program {
            name,
            own_search: false,
            ..
        } => name,
        // Where env looks is the line's own business: no telling from here.
        EnvRequest::Program { .. } | EnvRequest::Other => return None,
    };
    let found = if name.contains('/') {
        // Relative to the function's folder, its working directory.
        let program = path
            .parent()
            .map_or_else(|| Path::new(name).to_path_buf(), |folder| folder.join(name));
        nix::unistd::access(&program, nix::unistd::AccessFlags::X_OK).is_ok()
    } else {
        let path_var = path_var.unwrap_or(OsStr::new(interpreter::DEFAULT_PATH));
        // env searches a relative folder from the function's folder too, which
        // the search here skips: no telling.
        if std::env::split_paths(path_var).any(|folder| !folder.is_absolute()) {
            return None;
        }
        interpreter::search(name, path_var).is_ok()
    };
    (!found).then(|| {
        spawn_error(
            format!(
                "its `#!` line asks env for `{name}`, which is not on the function's PATH (env exited 127)"
            ),
            format!(
                "install {name}, add its folder to the PATH functions get (`--env PATH=...` or `env` in watchdog.toml), or name the interpreter's full path on the first line of {relative}"
            ),
        )
    })
}

/// A JavaScript or TypeScript file: a handler module when not executable.
fn is_module(relative: &str) -> bool {
    let extension = Path::new(relative).extension().and_then(|ext| ext.to_str());
    crate::routes::discover::is_module_extension(extension)
}

/// Says why a spawn failed and what to do about it. Files are named by their
/// path in the served folder: the text reaches the client, which has no
/// business learning where the server keeps its files.
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
    if err.raw_os_error() == Some(ETXTBSY) {
        return InvokeError::FileBusy {
            file: relative.to_owned(),
        };
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
        // Deleted a moment ago, before live reload dropped its route: not the
        // function's `#!` line.
        io::ErrorKind::NotFound if path.symlink_metadata().is_err() => InvokeError::Removed {
            file: relative.to_owned(),
        },
        io::ErrorKind::NotFound if shebang_ends_in_cr(path) => windows_line_endings(relative),
        io::ErrorKind::NotFound => match shebang_line(path) {
            Some(line) => spawn_error(
                format!(
                    "the interpreter its `#!` line names was not found (or, if it is there, a loader it needs is not): `#!{line}`"
                ),
                format!(
                    "install it, or change the first line of {relative} to an interpreter that is there (`#!/usr/bin/env NAME` finds NAME on PATH)"
                ),
            ),
            None => spawn_error(
                "the file or the interpreter named on its `#!` line was not found".into(),
                format!("check the first line of {relative}"),
            ),
        },
        io::ErrorKind::PermissionDenied => match run_as {
            Some(user) => spawn_error(
                format!("permission denied for user {user}"),
                format!(
                    "the file and every folder above it must be readable and searchable by {user} \
                     (e.g. `chmod o+rx` on the folders and on {relative})"
                ),
            ),
            None => spawn_error(
                "permission denied".into(),
                format!("`chmod +x {relative}` (in the served folder)"),
            ),
        },
        _ if err.raw_os_error() == Some(ENOEXEC)
            && let Some(empty) = empty_file(path, relative) =>
        {
            empty
        }
        _ if err.raw_os_error() == Some(ENOEXEC) && is_module(relative) => spawn_error(
            "an executable module without a `#!` line runs as a CGI program, and the system cannot run it".into(),
            format!(
                "`chmod -x {relative}` to run it as a handler module, or add `#!/usr/bin/env node` to run it as a CGI script"
            ),
        ),
        _ if err.raw_os_error() == Some(ENOEXEC) => spawn_error(
            "not a program the system can run (a script without a `#!` line?)".into(),
            "add a `#!` line such as `#!/bin/sh`, or use a known extension (.sh .py .pl .rb .php)"
                .into(),
        ),
        io::ErrorKind::InvalidInput => spawn_error(
            err.to_string(),
            "remove the NUL byte from that variable (watchdog.toml, .env or --env)".into(),
        ),
        _ => spawn_error(err.to_string(), "see watchdog's log".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_removed_before_the_reload_is_not_a_broken_shebang() {
        let dir = tempfile::tempdir().unwrap();
        let missing = io::Error::from(io::ErrorKind::NotFound);
        let gone = dir.path().join("gone.sh");
        let error = describe(&missing, &gone, "gone.sh", None, None);
        assert!(matches!(error, InvokeError::Removed { .. }), "{error}");
        assert_eq!(error.status(), axum::http::StatusCode::NOT_FOUND);
        // The file is there: what was not found is its `#!` interpreter.
        let present = dir.path().join("present.sh");
        std::fs::write(&present, "#!/no/such/shell\n").unwrap();
        let error = describe(&missing, &present, "present.sh", None, None);
        assert!(error.to_string().contains("`#!` line"), "{error}");
        // An executable module without `#!`: the fix is the execute bit.
        let noexec = io::Error::from_raw_os_error(ENOEXEC);
        let error = describe(&noexec, &present, "handler.mjs", None, None);
        assert!(error.hint().unwrap().contains("chmod -x"), "{error:?}");
        let error = describe(&noexec, &present, "tool", None, None);
        assert!(!error.hint().unwrap().contains("chmod -x"), "{error:?}");
    }
}
