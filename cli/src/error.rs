//! What can go wrong, and the exit status each gives. With `--wait` the status is the job's outcome (0 succeeded,
//! 1 failed, 2 stopped), so an error of the command itself gets a code of its own.

/// Exit status of a command that could not do what it was asked.
pub const EXIT_ERROR: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input, found before anything was created.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The API server refused or failed; its message is kept.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn kube(what: impl Into<String>, source: kube::Error) -> CliError {
        CliError::Kube {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
