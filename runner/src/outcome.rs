//! How a job ended, whatever the agent: what is reported to the gateway, written as termination message, and the
//! runner's own exit code.

use crds::contract::MAX_TERMINATION_MESSAGE_BYTES;

/// How the agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "was killed by signal {s}"),
        }
    }
}

impl From<std::process::ExitStatus> for Exit {
    fn from(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub success: bool,
    /// The agent's final text (empty when it failed).
    pub result: String,
    pub error: Option<String>,
    /// The agent CLI's own session id, for the next Resume.
    pub session_id: Option<String>,
    pub exit: Exit,
    /// Tokens and cost of the run, when the agent said (Claude Code's result message, a generic agent's usage
    /// file).
    pub usage: Option<crds::Usage>,
}

/// Appended to a termination message that had to be cut.
const CUT_MARKER: &str = "\n[truncated; the full result is in the job's status]";

impl Outcome {
    pub fn succeeded(result: String, session_id: Option<String>) -> Outcome {
        Outcome {
            success: true,
            result,
            error: None,
            session_id,
            exit: Exit::Code(0),
            usage: None,
        }
    }

    /// A failure; an agent that failed but exited 0 still makes the runner exit non-zero.
    pub fn failed(exit: Exit, error: String, session_id: Option<String>) -> Outcome {
        let exit = match exit {
            Exit::Code(0) => Exit::Code(1),
            other => other,
        };
        Outcome {
            success: false,
            result: String::new(),
            error: Some(error),
            session_id,
            exit,
            usage: None,
        }
    }

    pub fn with_usage(mut self, usage: Option<crds::Usage>) -> Outcome {
        self.usage = usage;
        self
    }

    /// The runner's exit code: 0 on success, the agent's code on failure, 128 + signal when it was killed.
    pub fn exit_code(&self) -> i32 {
        match self.exit {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    /// The termination message: the result (or the error), cut to what Kubernetes keeps, with a marker.
    pub fn termination_message(&self) -> String {
        let text = if self.success {
            &self.result
        } else {
            self.error.as_deref().unwrap_or_default()
        };
        if text.len() <= MAX_TERMINATION_MESSAGE_BYTES {
            return text.to_string();
        }
        let mut end = MAX_TERMINATION_MESSAGE_BYTES - CUT_MARKER.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{CUT_MARKER}", &text[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::succeeded("x".into(), None).exit_code(), 0);
        assert_eq!(
            Outcome::failed(Exit::Code(0), "e".into(), None).exit_code(),
            1
        );
        assert_eq!(
            Outcome::failed(Exit::Code(3), "e".into(), None).exit_code(),
            3
        );
        assert_eq!(
            Outcome::failed(Exit::Signal(15), "e".into(), None).exit_code(),
            143
        );
    }

    #[test]
    fn termination_messages_fit_kubernetes() {
        let short = Outcome::failed(Exit::Code(2), "boom".into(), None);
        assert_eq!(short.termination_message(), "boom");
        // One ASCII byte, then 4-byte chars: the cut point falls inside a char.
        let text = format!("a{}", "😀".repeat(5000));
        let allowed = MAX_TERMINATION_MESSAGE_BYTES - CUT_MARKER.len();
        assert!(!text.is_char_boundary(allowed), "fixture must cut mid-char");
        let long = Outcome::succeeded(text.clone(), None);
        let message = long.termination_message();
        let body = 1 + 4 * ((allowed - 1) / 4);
        assert!(body > allowed - 4 && body < allowed);
        assert_eq!(message, format!("{}{CUT_MARKER}", &text[..body]));
        assert!(message.len() <= MAX_TERMINATION_MESSAGE_BYTES);
        assert!(message.len() > MAX_TERMINATION_MESSAGE_BYTES - 4);
    }
}
