//! One module per subcommand; each returns how the process should exit.

pub mod invoke;
pub mod routes;
pub mod serve;

/// A failure, split by exit code: 2 for usage and configuration, 1 at run time.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Usage(anyhow::Error),
    #[error(transparent)]
    Runtime(anyhow::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Runtime(_) => 1,
        }
    }
}

pub(crate) fn usage(err: impl Into<anyhow::Error>) -> CommandError {
    CommandError::Usage(err.into())
}

pub(crate) fn runtime(err: impl Into<anyhow::Error>) -> CommandError {
    CommandError::Runtime(err.into())
}
