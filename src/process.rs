//! Everything about the OS processes a function becomes: its process group, knowing
//! when its leader exits, killing the group, and reaping what is left.
//!
//! Invariant: a group is signalled only while it is known to exist. The leader is
//! watched through a pidfd, which reports its exit *without* reaping it, so the
//! zombie leader still pins the group id while we send the final signals; the group
//! id cannot be recycled for another function's group under our feet (pids wrap fast
//! here: `pid_max` is 32768).

pub mod exit_watch;
pub mod group;
pub mod reaper;

pub use exit_watch::ExitWatch;
pub use group::ProcessGroup;
