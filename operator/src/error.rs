//! Errors of the reconcilers, and how each kind is retried.

use std::time::Duration;

use kube::runtime::controller::Action;

use crate::retry::{self, Class};

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

    /// A refusal the API server will give again to the same request (bad request, forbidden, invalid): retrying
    /// it soon only loads the server. The job reconciler fails the job with the server's message instead.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422))
    }

    /// The API server's message of a refusal, for a reason shown to people.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            Error::Kube(kube::Error::Api(s)) => Some(s.message.as_str()),
            _ => None,
        }
    }

    /// What kind of failure this is, for the retry policy.
    pub fn class(&self) -> Class {
        match self {
            Error::Conflict(_) => Class::Conflict,
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => Class::Conflict,
            Error::Kube(kube::Error::Api(s)) if s.code == 429 => Class::Throttled {
                retry_after: s
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|&secs| secs > 0)
                    .map(|secs| Duration::from_secs(secs.into())),
            },
            e if e.is_permanent() => Class::Permanent,
            Error::Kube(_) => Class::Transient,
            Error::Serde(_) => Class::Serde,
        }
    }

    /// How soon to try again after `attempt` earlier failures in a row of the same object: conflicts at once
    /// (the watch has or will have the newer object), throttling as the server asks (or with a longer backoff),
    /// other trouble exponentially from 500 ms to 5 min with jitter, permanent refusals only after a long while.
    pub fn retry(&self, attempt: u32) -> Action {
        Action::requeue(retry::delay(self.class(), attempt, retry::jitter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, retry_after: Option<u32>) -> Error {
        let mut s = kube::core::Status::failure("refused", "Reason");
        s.code = code;
        if let Some(secs) = retry_after {
            s.details = Some(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: vec![],
                retry_after_seconds: secs,
            });
        }
        Error::Kube(kube::Error::Api(s.boxed()))
    }

    #[test]
    fn classes() {
        for code in [400, 403, 422] {
            assert!(api(code, None).is_permanent(), "{code}");
            assert_eq!(api(code, None).class(), Class::Permanent);
        }
        for code in [404, 409, 429, 500, 503] {
            assert!(!api(code, None).is_permanent(), "{code}");
        }
        assert_eq!(api(409, None).class(), Class::Conflict);
        assert_eq!(Error::Conflict("x".into()).class(), Class::Conflict);
        assert_eq!(api(500, None).class(), Class::Transient);
        assert_eq!(
            api(429, None).class(),
            Class::Throttled { retry_after: None }
        );
        assert_eq!(
            api(429, Some(3)).class(),
            Class::Throttled {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(api(422, None).api_message(), Some("refused"));
    }

    #[test]
    fn a_429_waits_at_least_its_retry_after() {
        let d = retry::delay(api(429, Some(4)).class(), 0, retry::jitter());
        assert!(d >= Duration::from_secs(4));
    }
}
