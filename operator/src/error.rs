//! Errors of the reconcilers, and how each kind is retried.

use std::time::Duration;

use kube::runtime::controller::Action;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// Another writer changed the object since we read it (optimistic concurrency); read again and redo.
    #[error("conflict writing {0}: it changed since it was read")]
    Conflict(String),

    /// An object could not be (de)serialised; a bug or a malformed object, not worth a fast retry.
    #[error("serialisation: {0}")]
    Serde(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Conflicts are the normal outcome of acting on a stale cache and resolve on the next read.
    pub fn from_write(err: kube::Error, what: impl Into<String>) -> Self {
        match &err {
            kube::Error::Api(status) if status.code == 409 => Error::Conflict(what.into()),
            _ => Error::Kube(err),
        }
    }

    /// A short label for the error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 429 => "throttled",
            Error::Kube(kube::Error::Api(s)) if s.code >= 500 => "server",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Conflict(_) => "conflict",
            Error::Serde(_) => "serde",
        }
    }

    /// How soon to try again: conflicts at once (the watch has or will have the newer object), throttling and
    /// server trouble with backoff, anything else slowly. Invalid input never reaches here: it fails the job.
    pub fn retry(&self, attempt: u32) -> Action {
        let base = match self {
            Error::Conflict(_) => Duration::from_millis(50),
            Error::Kube(kube::Error::Api(s)) if s.code == 429 => Duration::from_secs(1),
            Error::Kube(_) => Duration::from_millis(500),
            Error::Serde(_) => Duration::from_secs(30),
        };
        let backoff = base.saturating_mul(1 << attempt.min(6));
        Action::requeue(backoff.min(Duration::from_secs(60)))
    }
}
