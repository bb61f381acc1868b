//! Everything about the OS processes a function becomes: its process group, knowing
//! when its leader exits, killing the group, and reaping what is left.
//!
//! Invariant: a group is signalled only while something pins its id. The leader is
//! watched through a pidfd, which reports its exit *without* reaping it, so on a
//! timeout or disconnect the zombie leader pins the group id while the signals go
//! out (pids wrap fast here: `pid_max` is 32768). When a function exits normally,
//! tokio-process-stream reaps the leader itself; then the id stays pinned by any
//! member still alive (or a zombie we have not reaped), and an empty group answers
//! `killpg` with ESRCH: the id could only be reused after the pid counter wrapped
//! all the way round within those microseconds.

pub mod exit_watch;
pub mod group;
pub mod reaper;

pub use exit_watch::ExitWatch;
pub use group::ProcessGroup;
