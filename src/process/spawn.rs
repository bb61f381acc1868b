//! Starting a function on the hot path: `clone(CLONE_VM | CLONE_VFORK)` on a stack
//! kept per thread, then straight to `execve`.
//!
//! Why not `tokio::process` (or `std::process`) here, which the rest of watchdog
//! uses: measured with `perf` on the static C function at 16 connections, glibc's
//! `posix_spawn` behind them maps a fresh child stack on every spawn and unmaps it
//! afterwards, and that `munmap` sends a TLB-shootdown interrupt to every core
//! running one of watchdog's threads: about 11% of watchdog's CPU. The child then
//! makes ~120 `sigaction` calls and six `getrlimit` calls, `/dev/null` is opened
//! per spawn, and tokio reaps through SIGCHLD and its signal pipe. Here the stack
//! is reused, the child resets only the dispositions that matter, `/dev/null` is
//! opened once, and the leader is reaped with one `waitid` once its output has
//! closed ([`super::ExitWatch`]).
//!
//! The child's file descriptor table: a plain `clone` copies watchdog's whole
//! table (a reference taken on every open file) and `execve` then closes the
//! copies again, so a spawn cost grew with every connection held open: measured
//! here, 60 µs with 10 descriptors open, 82 µs with 700 (256 connections under
//! load), 320 µs with 5,000. A thread that owns [`StdioSlots`] instead clones
//! with `CLONE_FILES` (the table shared, nothing copied); the child places its
//! three streams in that thread's slots, three low descriptor numbers, and
//! unshares only the table below them (`close_range(CLOSE_RANGE_UNSHARE)`, Linux
//! 5.9+, which copies at least the first 64): the same 60 µs however many
//! connections are open. Either way the child closes everything above its
//! standard streams before `execve`, so a function started here inherits
//! nothing else, even a descriptor someone forgot to mark close-on-exec (std's
//! path relies on close-on-exec alone).
//!
//! Only the common case comes here: an executable or a script's interpreter,
//! with no resource limits and no `--user`. Work between fork and exec such as
//! joining a cgroup or switching user is not safe in a shared address space
//! (glibc's `setuid` signals every thread of the process), so those functions
//! keep std's fork path.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{LazyLock, OnceLock};

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// The child runs a few system calls on this stack before `execve`; glibc's own
/// `posix_spawn` gives it 32 KiB plus the arguments. Lazy symbol binding in the
/// child may save the whole vector register state here, hence the margin.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// Signals whose disposition must not reach the new program or run watchdog's
/// handler in the child before `execve`: SIGPIPE, which Rust ignores (an ignored
/// signal stays ignored across exec), and the ones watchdog's runtime handles.
/// SIGCHLD comes first: it is the one left unblocked across the clone.
const RESET_SIGNALS: [libc::c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
];

thread_local! {
    /// One child stack per thread: the calling thread is suspended until the child
    /// has called `execve` or `_exit` (CLONE_VFORK), so the stack is free again
    /// when `spawn` returns.
    static CHILD_STACK: RefCell<Box<[u8]>> = RefCell::new(vec![0; CHILD_STACK_BYTES].into_boxed_slice());
    /// This thread's stdio slots, when it has adopted some.
    static SLOTS: std::cell::OnceCell<StdioSlots> = const { std::cell::OnceCell::new() };
    /// A release failed: a slot may still hold a stream of an earlier child, so
    /// the next spawn puts every stream in, `/dev/null` included.
    static SLOT_NOT_RELEASED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether threads with stdio slots clone with a shared table. Off from the
/// start on a kernel that unshares it wrongly ([`unshares_cleanly`]), and for
/// good once a child finds `close_range(CLOSE_RANGE_UNSHARE)` missing (before
/// Linux 5.9, or refused by a seccomp profile): every spawn then copies the
/// table, as before.
static SHARED_TABLE_SPAWN: LazyLock<AtomicBool> = LazyLock::new(|| {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let clean = unshares_cleanly(release.trim());
    if !clean {
        tracing::info!(
            kernel = release.trim(),
            "functions start with a copy of watchdog's descriptor table: this kernel may predate the fix for CVE-2024-45025 (Linux 6.11, 6.6.48, 6.1.107, 5.15.166, 5.10.225)"
        );
    }
    AtomicBool::new(clean)
});

/// Whether kernel `release` copies the descriptor bitmaps right when
/// `close_range(CLOSE_RANGE_UNSHARE)` unshares part of a shared table. Before the
/// fix for CVE-2024-45025 the new table kept stray "this word is full" bits from
/// watchdog's, so a function that opened more than 64 descriptors could be given
/// numbers past every block watchdog had full (past 1,024 under load, which
/// breaks `select`). A release this cannot place (a distribution's own
/// numbering) counts as unfixed: the copy is slower, never wrong.
fn unshares_cleanly(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next()) else {
        return false;
    };
    let patch = numbers.next().flatten().unwrap_or(0);
    let fixed_in = match (major, minor) {
        (6, 10) => 7,
        (6, 6) => 48,
        (6, 1) => 107,
        (5, 15) => 166,
        (5, 10) => 225,
        _ => return (major, minor) >= (6, 11),
    };
    patch >= fixed_in
}

/// Three descriptor numbers, low in watchdog's table, that one thread's children
/// pass their standard streams through (see the module docs). Between spawns each
/// holds `/dev/null` (close-on-exec); a number is never closed while reserved, or
/// another thread's next socket could take it and a child would overwrite it.
#[derive(Debug)]
pub struct StdioSlots {
    fds: [OwnedFd; 3],
}

impl StdioSlots {
    /// Takes three of the lowest free descriptor numbers. Reserve early, before
    /// connections fill the table: a child copies every descriptor below its
    /// thread's highest slot (and at least the first 64).
    ///
    /// # Errors
    /// When `/dev/null` cannot be opened or the process is out of descriptors.
    pub fn reserve() -> io::Result<Self> {
        let null = dev_null()?;
        let slot = || -> io::Result<OwnedFd> {
            let fd = nix::fcntl::fcntl(null, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
            #[allow(unsafe_code)]
            // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        Ok(Self {
            fds: [slot()?, slot()?, slot()?],
        })
    }

    /// Makes these the calling thread's slots, for every spawn it makes from now
    /// on. A thread adopts slots once; later calls are ignored.
    pub fn adopt(self) {
        SLOTS.with(|slots| {
            let _ = slots.set(self);
        });
    }

    fn raw(&self) -> [libc::c_int; 3] {
        [
            self.fds[0].as_raw_fd(),
            self.fds[1].as_raw_fd(),
            self.fds[2].as_raw_fd(),
        ]
    }

    /// Puts `/dev/null` back in every slot, dropping the child's stream ends
    /// (the stdout pipe would otherwise never reach EOF). `dup3` onto an open
    /// descriptor replaces it in one step, so the number is never free.
    /// A slot whose stream was `/dev/null` itself (stdin without a body) still
    /// holds it: the child left it as it was.
    fn release(
        slots: [libc::c_int; 3],
        streams: [libc::c_int; 3],
        kept: libc::c_int,
        null: BorrowedFd<'_>,
    ) {
        let changed = slots
            .into_iter()
            .zip(streams)
            .filter(|&(_, stream)| stream != kept)
            .map(|(slot, _)| slot);
        let mut released = true;
        for slot in changed {
            #[allow(unsafe_code)]
            // SAFETY: dup3 only replaces this thread's own reserved descriptor.
            let replaced = unsafe { libc::dup3(null.as_raw_fd(), slot, libc::O_CLOEXEC) };
            if replaced < 0 {
                released = false;
                tracing::error!(slot, error = %io::Error::last_os_error(), "cannot release a stdio slot");
            }
        }
        SLOT_NOT_RELEASED.set(!released);
    }
}

/// A NULL-terminated array of C strings, the form `execve` wants `argv` and `envp` in.
/// It owns some of its strings and may borrow others for `'a` (a function's
/// [`EnvBlock`](super::env_block::EnvBlock), built once).
pub struct CStringArray<'a> {
    owned: Vec<CString>,
    pointers: Vec<*const c_char>,
    borrowed: std::marker::PhantomData<&'a CStr>,
}

impl<'a> CStringArray<'a> {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut pointers = Vec::with_capacity(capacity + 1);
        pointers.push(std::ptr::null());
        Self {
            owned: Vec::with_capacity(capacity),
            pointers,
            borrowed: std::marker::PhantomData,
        }
    }

    /// Adds one string.
    pub fn push(&mut self, string: CString) {
        // The CString's heap buffer does not move when the Vec of them grows.
        self.point_at(&string);
        self.owned.push(string);
    }

    /// Adds one string it does not own.
    pub fn push_borrowed(&mut self, string: &'a CStr) {
        self.point_at(string);
    }

    /// Adds one string from its bytes.
    ///
    /// # Errors
    /// `InvalidInput` when they hold a NUL byte, which no C string can carry.
    pub fn push_bytes(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        let string = CString::new(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte found"))?;
        self.push(string);
        Ok(())
    }

    fn point_at(&mut self, string: &CStr) {
        let last = self.pointers.len() - 1;
        self.pointers[last] = string.as_ptr();
        self.pointers.push(std::ptr::null());
    }

    /// The strings, in order.
    pub fn iter(&self) -> impl Iterator<Item = &CStr> {
        self.pointers[..self.pointers.len() - 1]
            .iter()
            .map(|&pointer| {
                #[allow(unsafe_code)]
                // SAFETY: every pointer but the last comes from a CString this array
                // owns or a CStr it borrows for 'a, both alive as long as `self`.
                unsafe {
                    CStr::from_ptr(pointer)
                }
            })
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

impl std::fmt::Debug for CStringArray<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Reports the errno of the step that failed to the parent and ends the child.
fn fail(failure: &AtomicI32) -> ! {
    failure.store(nix::errno::Errno::last_raw().max(1), Ordering::Relaxed);
    #[allow(unsafe_code)]
    // SAFETY: _exit ends the vfork child without running exit handlers or
    // flushing stdio buffers that belong to watchdog.
    unsafe {
        libc::_exit(127)
    }
}

/// What to run and where its standard streams go.
pub struct Exec<'a> {
    pub program: &'a CStr,
    pub argv: &'a CStringArray<'a>,
    pub envp: &'a CStringArray<'a>,
    pub cwd: &'a CStr,
    /// `None`: the function reads `/dev/null`.
    pub stdin: Option<BorrowedFd<'a>>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
}

/// `/dev/null`, opened once for every function that gets no body.
///
/// # Errors
/// When `/dev/null` cannot be opened.
pub fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if DEV_NULL.get().is_none() {
        let fd = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // Another thread may have won the race; its fd is kept, this one closed.
        let _ = DEV_NULL.set(fd);
    }
    DEV_NULL
        .get()
        .map(AsFd::as_fd)
        .ok_or_else(|| io::Error::other("/dev/null is not open"))
}

/// Starts `exec` as the leader of a new process group, and returns its pid.
/// The caller reaps it ([`super::ExitWatch`]) and must register it with the
/// orphan sweep before the sweep can run again ([`super::reaper::spawn_leader`]).
///
/// # Errors
/// The errno of whichever step failed in the child (`ENOENT`, `EACCES`,
/// `ENOEXEC` for a script without `#!`, `E2BIG`…), or of `clone` itself. The
/// failed child has been reaped by then. `Unsupported` when a standard stream
/// of watchdog itself is closed, so a pipe took its number: use std's spawner.
pub fn spawn(exec: &Exec<'_>) -> io::Result<u32> {
    let null = dev_null()?;
    let stdin = exec.stdin.unwrap_or(null);
    let fds = [
        stdin.as_raw_fd(),
        exec.stdout.as_raw_fd(),
        exec.stderr.as_raw_fd(),
    ];
    if fds.iter().any(|&fd| fd <= libc::STDERR_FILENO) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a standard stream of watchdog is closed",
        ));
    }
    let (program, argv, envp, cwd) = (
        exec.program.as_ptr(),
        exec.argv.as_ptr(),
        exec.envp.as_ptr(),
        exec.cwd.as_ptr(),
    );
    // The child writes the errno of a failed step here; 0 means it reached execve.
    let failure = AtomicI32::new(0);
    let mut parent_mask = SigSet::empty();
    // Every signal stays blocked in the child until just before execve, so no
    // handler of watchdog's can run on the shared memory in between. Except
    // SIGCHLD: it reaches a process only when one of its own children ends, and
    // the child has none yet. Blocked here, it would cost a wakeup of another
    // thread per request: while this thread sits in the window, an earlier child
    // that ends finds SIGCHLD blocked in its parent thread, so the kernel cannot
    // drop it as ignored and wakes some other thread of watchdog to take it
    // (measured: about 0.6 extra context switches per request at 16 connections).
    let mut blocked = SigSet::all();
    blocked.remove(Signal::SIGCHLD);
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&blocked),
        Some(&mut parent_mask),
    )?;
    let child_mask = parent_mask.as_ref() as *const libc::sigset_t;
    let slots = if SHARED_TABLE_SPAWN.load(Ordering::Relaxed) {
        SLOTS.with(|slots| slots.get().map(StdioSlots::raw))
    } else {
        None
    };
    let unshare_failed = AtomicBool::new(false);
    // A stream that is /dev/null is left in its slot, which holds it already,
    // unless a release failed (-1 matches no stream).
    let kept = if SLOT_NOT_RELEASED.get() {
        -1
    } else {
        null.as_raw_fd()
    };
    let child = ChildSteps {
        fds,
        kept,
        slots,
        cwd,
        program,
        argv,
        envp,
        child_mask,
        failure: &failure,
        unshare_failed: &unshare_failed,
    };
    let cloned = CHILD_STACK.with_borrow_mut(|stack| {
        // `libc::clone` rather than `nix::sched::clone`, which boxes its
        // callback: an allocation per spawn for a pointer this passes as is.
        // No CLONE_PIDFD: most leaders are reaped by pid once their output has
        // closed, and a pidfd is opened only for one that has to be waited for
        // (see `ExitWatch`).
        let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        if slots.is_some() {
            flags |= libc::CLONE_FILES;
        }
        #[allow(unsafe_code)]
        // SAFETY: CLONE_VFORK suspends this thread until the child has exec'd or
        // exited, so `stack`, `child` and everything it points to outlive the
        // child's use of them. The stack grows down from its end, aligned to 16
        // bytes. SIGCHLD as the exit signal makes it an ordinary child for waitid
        // and the orphan sweep.
        unsafe {
            let top = stack.as_mut_ptr().add(stack.len());
            let top = top.sub(top as usize % 16);
            libc::clone(
                run_child,
                top.cast(),
                flags,
                std::ptr::from_ref(&child).cast_mut().cast(),
            )
        }
    });
    let clone_error = io::Error::last_os_error();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&parent_mask), None);
    if let Some(slots) = slots {
        // The child runs on its own table by now (it exec'd or exited).
        StdioSlots::release(slots, fds, kept, null);
    }
    if cloned < 0 {
        return Err(clone_error);
    }
    let errno = failure.load(Ordering::Relaxed);
    if errno != 0 {
        // It has called _exit already; this wait is immediate.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(cloned), None);
        let missing = [libc::ENOSYS, libc::EINVAL, libc::EPERM].contains(&errno);
        if unshare_failed.load(Ordering::Relaxed) && missing {
            tracing::warn!(
                error = %io::Error::from_raw_os_error(errno),
                "close_range(CLOSE_RANGE_UNSHARE) is refused (a kernel before 5.9, or a seccomp profile); functions start with a copy of watchdog's descriptor table"
            );
            SHARED_TABLE_SPAWN.store(false, Ordering::Relaxed);
            return spawn(exec);
        }
        return Err(io::Error::from_raw_os_error(errno));
    }
    u32::try_from(cloned).map_err(|_| io::Error::other("clone returned a negative pid"))
}

/// What the vfork child does between `clone` and `execve`, all prepared by the
/// parent beforehand.
struct ChildSteps<'a> {
    fds: [libc::c_int; 3],
    /// A stream the slots hold already (watchdog's `/dev/null`), or -1.
    kept: libc::c_int,
    /// The thread's stdio slots: the table is shared with watchdog until the
    /// child unshares the part below them.
    slots: Option<[libc::c_int; 3]>,
    cwd: *const c_char,
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    child_mask: *const libc::sigset_t,
    failure: &'a AtomicI32,
    /// Set with `failure` when the table could not be unshared.
    unshare_failed: &'a AtomicBool,
}

/// The vfork child's entry point.
extern "C" fn run_child(steps: *mut libc::c_void) -> libc::c_int {
    #[allow(unsafe_code)]
    // SAFETY: this runs in the vfork child, which shares watchdog's memory while
    // the calling thread is suspended; `steps` points to the parent's `ChildSteps`,
    // alive until then. It only makes system calls on data prepared before the
    // clone: no allocation, no lock, no unwinding (every path ends in execve or
    // _exit).
    unsafe {
        let steps = &*steps.cast::<ChildSteps<'_>>();
        for signal in RESET_SIGNALS {
            libc::signal(signal, libc::SIG_DFL);
        }
        if libc::setpgid(0, 0) != 0 {
            fail(steps.failure);
        }
        if let Some(slots) = steps.slots {
            take_own_table(steps, slots);
        }
        let sources = steps.slots.unwrap_or(steps.fds);
        for (target, fd) in sources.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(steps.failure);
            }
        }
        // The function gets its three streams only: not what the unshare
        // copied below the slots (other threads' slots, /dev/null, a listener),
        // nor, on the plain path, a descriptor watchdog inherited without
        // close-on-exec. Best effort: before Linux 5.9 close-on-exec alone
        // applies.
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        if libc::chdir(steps.cwd) != 0 {
            fail(steps.failure);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, steps.child_mask, std::ptr::null_mut());
        libc::execve(steps.program, steps.argv, steps.envp);
        fail(steps.failure)
    }
}

/// In a child cloned with `CLONE_FILES`: puts its streams in `slots` of the
/// table it still shares with watchdog (only this child's thread uses them, and
/// that thread is suspended), then takes a private copy of the table up to the
/// highest slot only.
///
/// # Safety
/// Only in the vfork child, as [`run_child`].
#[allow(unsafe_code)]
unsafe fn take_own_table(steps: &ChildSteps<'_>, slots: [libc::c_int; 3]) {
    // SAFETY: plain system calls on descriptor numbers; close-on-exec on the
    // slots so that no other child of watchdog, started meanwhile by another
    // thread, inherits a stream end before the parent releases the slot.
    unsafe {
        for (fd, slot) in steps.fds.iter().zip(slots) {
            // The slot holds /dev/null already (a request without a body): two
            // system calls per request fewer, this one and the parent's release.
            if *fd == steps.kept {
                continue;
            }
            if libc::dup3(*fd, slot, libc::O_CLOEXEC) < 0 {
                fail(steps.failure);
            }
        }
        let above = slots.iter().max().map_or(3, |highest| highest + 1) as libc::c_uint;
        let unshared = libc::syscall(
            libc::SYS_close_range,
            above,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        );
        if unshared != 0 {
            steps.unshare_failed.store(true, Ordering::Relaxed);
            fail(steps.failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsFd;

    use super::*;
    use crate::process::pipe::pipe;

    fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> io::Result<(u32, String)> {
        let (out_read, out_write) = pipe()?;
        let (_err_read, err_write) = pipe()?;
        let program = CString::new(program).unwrap();
        let mut argv = CStringArray::with_capacity(args.len() + 1);
        argv.push_bytes(program.as_bytes().to_vec())?;
        for arg in args {
            argv.push_bytes(arg.as_bytes().to_vec())?;
        }
        let mut envp = CStringArray::with_capacity(env.len());
        for (key, value) in env {
            envp.push_bytes(format!("{key}={value}").into_bytes())?;
        }
        let cwd = CString::new("/tmp").unwrap();
        let pid = spawn(&Exec {
            program: &program,
            argv: &argv,
            envp: &envp,
            cwd: &cwd,
            stdin: None,
            stdout: out_write.as_fd(),
            stderr: err_write.as_fd(),
        })?;
        drop(out_write);
        drop(err_write);
        let mut output = String::new();
        std::fs::File::from(out_read).read_to_string(&mut output)?;
        // A child of this process that nothing else waits for.
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None)?;
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid as i32), 0)
        );
        Ok((pid, output))
    }

    #[test]
    fn runs_the_program_with_exactly_the_given_environment_in_its_own_group() {
        let (pid, output) = run(
            "/bin/sh",
            &["-c", "echo \"$GREETING|$(pwd)|$(ps -o pgid= -p $$ | tr -d ' ')|$$\"; env | wc -l; read x; echo \"stdin:$x\""],
            &[("GREETING", "hi"), ("PATH", "/usr/bin:/bin")],
        )
        .unwrap();
        let mut lines = output.lines();
        assert_eq!(lines.next().unwrap(), format!("hi|/tmp|{pid}|{pid}"));
        // GREETING, PATH, and the PWD the shell sets for itself.
        assert!(
            lines.next().unwrap().trim().parse::<u32>().unwrap() <= 4,
            "{output}"
        );
        assert_eq!(lines.next().unwrap(), "stdin:", "stdin is /dev/null");
    }

    #[test]
    fn reports_the_childs_errno_and_leaves_no_zombie() {
        let missing = run("/nonexistent/program", &[], &[]).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("noshebang");
        std::fs::write(&script, "echo hi\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let not_a_program = run(script.to_str().unwrap(), &[], &[]).unwrap_err();
        assert_eq!(not_a_program.raw_os_error(), Some(libc::ENOEXEC));
        // The failed children were reaped by spawn itself; the servers in the
        // integration tests check for zombies after a bad `#!` line.
    }

    /// On a thread of its own (slots are adopted once per thread): adopts
    /// fresh slots, runs `check` with their numbers, then checks that they are
    /// back to /dev/null, so no child's stream end is left in watchdog.
    fn with_slots(check: impl FnOnce([libc::c_int; 3]) + Send + 'static) {
        std::thread::spawn(|| {
            let slots = StdioSlots::reserve().unwrap();
            let slot_fds = slots.raw();
            slots.adopt();
            check(slot_fds);
            for slot in slot_fds {
                let target = std::fs::read_link(format!("/proc/self/fd/{slot}")).unwrap();
                assert_eq!(target, std::path::Path::new("/dev/null"), "slot {slot}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn with_stdio_slots_the_child_gets_its_three_streams_and_nothing_else() {
        with_slots(|slots| {
            // A descriptor someone forgot to mark close-on-exec, above the slots.
            #[allow(unsafe_code)]
            // SAFETY: dup of stdin; the copy is owned by `leaked` from here on.
            let leaked = unsafe { OwnedFd::from_raw_fd(libc::dup(0)) };
            assert!(leaked.as_raw_fd() > *slots.iter().max().unwrap());
            let (_, listing) = run("/bin/ls", &["/proc/self/fd"], &[]).unwrap();
            let fds: Vec<&str> = listing.split_whitespace().collect();
            // 0, 1, 2, and the directory ls itself opened to list them.
            assert_eq!(fds, ["0", "1", "2", "3"], "{listing}");
        });
    }

    #[test]
    fn with_stdio_slots_a_failed_child_leaves_the_slots_released() {
        with_slots(|_| {
            let err = run("/nonexistent/program", &[], &[]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        });
    }

    #[test]
    fn two_threads_with_slots_spawn_at_once_without_crossing_streams() {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                std::thread::spawn(move || {
                    StdioSlots::reserve().unwrap().adopt();
                    for round in 0..200 {
                        let word = format!("{worker}-{round}");
                        let (_, output) = run("/bin/echo", &[&word], &[]).expect("spawn");
                        assert_eq!(output, format!("{word}\n"));
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
    }

    #[test]
    fn only_kernels_with_the_unshare_fix_share_the_table() {
        for (release, clean) in [
            ("6.18.44-fc-v1045", true),
            ("6.11.0", true),
            ("6.10.7-arch1", true),
            ("6.10.6", false),
            ("6.6.48", true),
            ("6.6.47-generic", false),
            ("6.1.107", true),
            ("6.1.0-18-amd64", false),
            ("5.15.166", true),
            ("5.10.224", false),
            ("5.14.0-427.el9.x86_64", false),
            ("6.8.0-45-generic", false),
            ("4.19.0", false),
            ("", false),
        ] {
            assert_eq!(unshares_cleanly(release), clean, "{release}");
        }
    }

    #[test]
    fn a_nul_byte_is_refused_before_anything_runs() {
        let mut envp = CStringArray::with_capacity(1);
        let err = envp.push_bytes(b"KEY=a\0b".to_vec()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
