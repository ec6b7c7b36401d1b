//! Any agent command that follows the runner's contract, for agents other than Claude Code:
//!
//! - it gets the prompt on its standard input (and, when it fits, in `AGENT_PROMPT`), runs in the job's working
//!   folder with the Pod's `AGENT_*` environment, and `HOME` in the session workspace;
//! - it may write its final text to the file named by `AGENT_RESULT_FILE` (else its standard output is the result)
//!   and its own session id to `AGENT_SESSION_ID_FILE` (given back as `AGENT_RESUME_ID` on the next Resume);
//! - it may write what it used to the file named by `AGENT_USAGE_FILE`: JSON of the Usage shape
//!   (`{"inputTokens": 120, "outputTokens": 45, "cacheReadTokens": 0, "cacheWriteTokens": 0, "costUSD": "0.0132",
//!   "turns": 2}`, every field optional), rewritten whenever it grows: the runner reports it while the agent runs
//!   (budgets are enforced on it) and with the result;
//! - exit code 0 means success; anything else is a failure whose error text is the end of its error output.

use std::path::{Path, PathBuf};

use crate::outcome::{Exit, Outcome};

pub const RESULT_FILE_VAR: &str = "AGENT_RESULT_FILE";
pub const SESSION_ID_FILE_VAR: &str = "AGENT_SESSION_ID_FILE";
pub const USAGE_FILE_VAR: &str = "AGENT_USAGE_FILE";

/// Standard output kept as the result of a command that writes no result file.
const STDOUT_KEPT_BYTES: usize = 1024 * 1024;

/// The files a command may write, in the job's scratch folder.
#[derive(Debug, Clone)]
pub struct Files {
    pub result: PathBuf,
    pub session_id: PathBuf,
    pub usage: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            result: dir.join("result"),
            session_id: dir.join("session-id"),
            usage: dir.join("usage.json"),
        }
    }

    pub fn env(&self) -> [(&'static str, PathBuf); 3] {
        [
            (RESULT_FILE_VAR, self.result.clone()),
            (SESSION_ID_FILE_VAR, self.session_id.clone()),
            (USAGE_FILE_VAR, self.usage.clone()),
        ]
    }

    /// What the usage file says now; a missing file is no usage, an unreadable one is logged and ignored (the
    /// agent may be halfway through rewriting it: the next look reads it whole).
    pub fn read_usage(&self) -> Option<crds::Usage> {
        let text = std::fs::read_to_string(&self.usage).ok()?;
        parse_usage(&text)
            .map_err(|e| tracing::warn!(file = %self.usage.display(), error = %e, "ignoring the usage file"))
            .ok()
    }
}

/// Reads the usage file's JSON; a cost that is not a decimal string of dollars is refused.
pub fn parse_usage(text: &str) -> Result<crds::Usage, String> {
    let usage: crds::Usage = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(cost) = &usage.cost_usd {
        crds::Cost::parse(cost)?;
    }
    Ok(usage)
}

/// Collects standard output, keeping its last `STDOUT_KEPT_BYTES`.
#[derive(Debug, Default)]
pub struct Output(String);

impl Output {
    pub fn push(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
        if self.0.len() > STDOUT_KEPT_BYTES {
            let mut cut = self.0.len() - STDOUT_KEPT_BYTES;
            while !self.0.is_char_boundary(cut) {
                cut += 1;
            }
            self.0.drain(..cut);
        }
    }
}

/// The outcome of a finished command, from its exit, the files it wrote and its output.
pub fn outcome(
    exit: Exit,
    result_file: Option<String>,
    session_file: Option<String>,
    stdout: Output,
    stderr_tail: &str,
    resume_id: Option<&str>,
) -> Outcome {
    let session_id = session_file
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| resume_id.map(String::from));
    if exit == Exit::Code(0) {
        let result = result_file.unwrap_or(stdout.0);
        return Outcome::succeeded(result.trim().to_string(), session_id);
    }
    let said = [stderr_tail, stdout.0.as_str()]
        .into_iter()
        .map(str::trim)
        .find(|s| !s.is_empty());
    let error = match said {
        Some(text) => format!("the agent command {exit}: {text}"),
        None => format!("the agent command {exit}"),
    };
    Outcome::failed(exit, error, session_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> Output {
        let mut o = Output::default();
        for l in text.lines() {
            o.push(l);
        }
        o
    }

    #[test]
    fn the_result_file_wins_over_stdout() {
        let o = outcome(
            Exit::Code(0),
            Some("final\n".into()),
            Some("sid\n".into()),
            out("log"),
            "",
            None,
        );
        assert_eq!(o, Outcome::succeeded("final".into(), Some("sid".into())));
        let o = outcome(
            Exit::Code(0),
            None,
            None,
            out("line 1\nline 2\n"),
            "",
            Some("old"),
        );
        assert_eq!(
            o,
            Outcome::succeeded("line 1\nline 2".into(), Some("old".into()))
        );
    }

    #[test]
    fn failures_carry_the_exit_and_what_the_command_said() {
        let o = outcome(
            Exit::Code(4),
            None,
            None,
            out("partial"),
            "it broke\n",
            None,
        );
        assert_eq!(
            o.error.as_deref(),
            Some("the agent command exited with code 4: it broke")
        );
        assert_eq!(o.exit_code(), 4);
        let o = outcome(Exit::Code(4), None, None, out(""), "", None);
        assert_eq!(
            o.error.as_deref(),
            Some("the agent command exited with code 4")
        );
    }

    #[test]
    fn the_usage_file_has_the_usage_shape() {
        let u =
            parse_usage(r#"{"inputTokens":120,"outputTokens":45,"costUSD":"0.0132","turns":2}"#)
                .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cost_usd.as_deref(),
                u.turns
            ),
            (120, 45, Some("0.0132"), 2)
        );
        assert!(parse_usage(r#"{"costUSD":"1e-3"}"#).is_err());
        assert!(parse_usage("{\"inputTok").is_err());
    }

    #[test]
    fn output_keeps_its_tail() {
        let mut o = Output::default();
        let line = "y".repeat(1000);
        for _ in 0..2000 {
            o.push(&line);
        }
        assert!(o.0.len() <= STDOUT_KEPT_BYTES);
        assert!(o.0.ends_with(&format!("{line}\n")));
    }

    #[test]
    fn output_is_cut_on_a_char_boundary() {
        // 4-byte chars plus the newline: the cut point (len - kept) is 1 past a char start.
        let mut o = Output::default();
        let line = "😀".repeat(STDOUT_KEPT_BYTES / 4 + 10);
        let cut = line.len() + 1 - STDOUT_KEPT_BYTES;
        assert!(!line.is_char_boundary(cut), "fixture must cut mid-char");
        o.push(&line);
        assert_eq!(o.0.len(), STDOUT_KEPT_BYTES - 3);
        assert!(o.0.starts_with('😀'));
        assert!(o.0.ends_with("😀\n"));
    }
}
