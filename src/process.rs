//! Everything about the OS processes a function becomes: starting it (spawn.rs,
//! its environment from env_block.rs), the pipes of its standard streams
//! (pipe.rs), its process group, knowing when its leader exits, killing the
//! group, reaping what is left, and stopping every function's group when
//! watchdog is killed (guardian.rs).
//!
//! Invariant: a group is signalled only while something pins its id. The leader of
//! a CGI invocation that must be stopped is watched for its exit *without* being
//! reaped (a pidfd, or `waitid(WNOWAIT)`), and it is reaped only after its group has
//! been signalled, so the zombie leader pins the group id while the signals go out
//! (pids wrap fast here: `pid_max` is 32768). A leader that exits on its own is
//! reaped when its pipes close, and its group is then signalled only if a member
//! is still there to pin the id. Warm workers are reaped by
//! tokio-process-stream; for them the id stays pinned by any member still alive,
//! and an empty group answers `killpg` with ESRCH.

pub mod env_block;
pub mod exit_watch;
pub mod group;
pub mod guardian;
pub mod isolation;
pub mod pipe;
pub mod reaper;
pub mod spawn;

pub use exit_watch::ExitWatch;
pub use group::ProcessGroup;
