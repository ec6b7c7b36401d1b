//! Claude Code as the agent: its command line (start or resume, MCP configuration, system prompt, tool
//! permissions) and the outcome its `--output-format stream-json` output gives (read by `agent_stream`).

use std::path::{Path, PathBuf};

use crate::invocation::{Invocation, JobType};
use crate::outcome::{Exit, Outcome};

/// The arguments of `claude` for this job. The prompt goes to its standard input: a prompt of 100,000 characters
/// can exceed the kernel's limit on one argument.
pub fn args(
    inv: &Invocation,
    mcp_config: &Path,
    servers: &[String],
    extra: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
        .map(String::from)
        .into();
    args.push("--mcp-config".into());
    args.push(mcp_config.display().to_string());
    if !servers.is_empty() {
        // The blueprint chose these servers for the agent: their tools need no interactive approval (there is
        // nobody to approve them in a Pod).
        args.push("--allowedTools".into());
        args.push(
            servers
                .iter()
                .map(|s| format!("mcp__{s}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(system) = &inv.system_prompt {
        // Appended to Claude Code's own system prompt, on every run: a resumed conversation does not keep it.
        args.push("--append-system-prompt".into());
        args.push(system.clone());
    }
    if let (JobType::Resume, Some(id)) = (inv.job_type, &inv.resume_id) {
        args.push("--resume".into());
        args.push(id.clone());
    }
    args.extend(extra.iter().cloned());
    args
}

/// Claude Code keeps a conversation under its home, in a folder named after the working folder it ran in
/// (`~/.claude/projects/<cwd with every other character than a letter or digit made '-'>/<id>.jsonl`), and
/// `--resume` only looks in the current one. A job that resumes in another folder than the session's earlier jobs
/// (another projectDir) gets a copy of the conversation there. Returns where it was copied from, if it was.
pub fn adopt_conversation(
    home: &Path,
    work_dir: &Path,
    id: &str,
) -> std::io::Result<Option<PathBuf>> {
    let projects = home.join(".claude").join("projects");
    let folder: String = work_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = format!("{id}.jsonl");
    let wanted = projects.join(folder).join(&file);
    if wanted.exists() {
        return Ok(None);
    }
    let Ok(entries) = std::fs::read_dir(&projects) else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let candidate = entry.path().join(&file);
        if candidate.is_file() {
            std::fs::create_dir_all(wanted.parent().expect("has a parent"))?;
            std::fs::copy(&candidate, &wanted)?;
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// What the stream has said so far; the reading of each line is `agent_stream`'s, shared with `kubectl agents`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Transcript(agent_stream::Transcript);

impl Transcript {
    /// A transcript that prices model calls with `prices` while the run goes on (see `agent_stream::pricing`).
    pub fn with_prices(prices: agent_stream::PriceTable) -> Transcript {
        Transcript(agent_stream::Transcript::with_prices(prices))
    }

    /// Takes one line of Claude Code's stream-json output. Lines that are not JSON (or not ours) are ignored.
    pub fn observe(&mut self, line: &str) {
        self.0.observe(line);
    }

    /// The model API's refusal that ended the run, if one did (see `temporary`).
    pub fn api_error(&self) -> Option<agent_stream::ApiError> {
        self.0.api_error
    }

    /// What the run has used so far (the result's totals once it came).
    pub fn usage(&self) -> Option<crds::Usage> {
        self.0.usage.clone()
    }

    /// The job's outcome, once Claude Code has exited.
    pub fn outcome(self, exit: Exit, stderr_tail: &str) -> Outcome {
        let usage = self.0.usage.clone();
        let agent_stream::Transcript {
            session_id,
            result,
            last_text,
            ..
        } = self.0;
        let outcome = match (exit, result) {
            (Exit::Code(0), Some((text, false))) => Outcome::succeeded(text, session_id),
            (exit, Some((text, true))) if !text.trim().is_empty() => {
                Outcome::failed(exit, text, session_id)
            }
            (Exit::Code(0), None) => Outcome::failed(
                Exit::Code(1),
                format!(
                    "Claude Code exited without a result{}",
                    detail(last_text.as_deref().or(Some(stderr_tail)))
                ),
                session_id,
            ),
            (exit, _) => Outcome::failed(
                exit,
                format!("Claude Code {exit}{}", detail(Some(stderr_tail))),
                session_id,
            ),
        };
        outcome.with_usage(usage)
    }
}

fn detail(text: Option<&str>) -> String {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => format!(": {t}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn invocation(job_type: JobType, resume: Option<&str>, system: Option<&str>) -> Invocation {
        Invocation {
            session: "s1".into(),
            job: "j1".into(),
            job_type,
            namespace: "ns".into(),
            parent: None,
            resume_id: resume.map(String::from),
            mcp_url: Some("http://gw/mcp".into()),
            prompt: "go".into(),
            system_prompt: system.map(String::from),
            mcp_servers: BTreeMap::new(),
            token_file: PathBuf::from("/t"),
            workspace: PathBuf::from("/ws"),
            work_dir: PathBuf::from("/ws"),
            termination_log: PathBuf::from("/dev/termination-log"),
        }
    }

    #[test]
    fn a_conversation_follows_the_session_into_another_folder() {
        let home = std::env::temp_dir().join(format!("runner-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let first = home.join(".claude/projects/-workspace");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::write(first.join("sid-1.jsonl"), "{}\n").unwrap();
        // Same folder: nothing to do.
        assert_eq!(
            adopt_conversation(&home, Path::new("/workspace"), "sid-1").unwrap(),
            None
        );
        // Another folder: the conversation is copied where Claude Code will look.
        let from = adopt_conversation(&home, Path::new("/workspace/repo_2.x"), "sid-1").unwrap();
        assert_eq!(from, Some(first.clone()));
        assert!(
            home.join(".claude/projects/-workspace-repo-2-x/sid-1.jsonl")
                .is_file()
        );
        // Unknown conversation: nothing found, nothing made.
        assert_eq!(
            adopt_conversation(&home, Path::new("/elsewhere"), "sid-9").unwrap(),
            None
        );
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn start_and_resume_command_lines() {
        let servers = vec!["agents".to_string(), "docs".to_string()];
        let start = args(
            &invocation(JobType::Start, None, Some("be brief")),
            Path::new("/h/mcp.json"),
            &servers,
            &["--model".into(), "opus".into()],
        );
        assert_eq!(
            start.join(" "),
            "-p --output-format stream-json --verbose --mcp-config /h/mcp.json \
             --allowedTools mcp__agents,mcp__docs --append-system-prompt be brief --model opus"
        );
        let resume = args(
            &invocation(JobType::Resume, Some("abc-123"), None),
            Path::new("/h/mcp.json"),
            &[],
            &[],
        );
        assert_eq!(
            resume.join(" "),
            "-p --output-format stream-json --verbose --mcp-config /h/mcp.json --resume abc-123"
        );
        // A session that never reported an id starts a new conversation rather than failing.
        let fresh = args(
            &invocation(JobType::Resume, None, None),
            Path::new("/m"),
            &[],
            &[],
        );
        assert!(!fresh.contains(&"--resume".to_string()));
    }

    const INIT: &str =
        r#"{"type":"system","subtype":"init","cwd":"/ws","session_id":"sid-1","tools":[]}"#;
    const ASSISTANT: &str = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"partial"}]},"session_id":"sid-1"}"#;
    const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"All done","session_id":"sid-1","num_turns":2,"total_cost_usd":0.0105,"usage":{"input_tokens":100,"output_tokens":40}}"#;
    const API_ERROR: &str = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 400 scripted failure","session_id":"sid-2"}"#;

    fn transcript(lines: &[&str]) -> Transcript {
        let mut t = Transcript::default();
        for l in lines {
            t.observe(l);
        }
        t
    }

    #[test]
    fn a_successful_run_gives_its_result_and_session() {
        let t = transcript(&[INIT, "not json", ASSISTANT, RESULT]);
        let o = t.outcome(Exit::Code(0), "");
        assert_eq!(
            o,
            Outcome::succeeded("All done".into(), Some("sid-1".into())).with_usage(Some(
                crds::Usage {
                    input_tokens: 100,
                    output_tokens: 40,
                    cost_usd: Some("0.0105".into()),
                    turns: 2,
                    ..Default::default()
                }
            ))
        );
    }

    #[test]
    fn an_error_result_fails_with_its_text() {
        let o = transcript(&[API_ERROR]).outcome(Exit::Code(1), "noise");
        assert_eq!(
            o,
            Outcome::failed(
                Exit::Code(1),
                "API Error: 400 scripted failure".into(),
                Some("sid-2".into())
            )
        );
    }

    #[test]
    fn a_crash_fails_with_the_exit_and_stderr() {
        let o = transcript(&[INIT]).outcome(Exit::Signal(9), "killed\n");
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some("Claude Code was killed by signal 9: killed")
        );
        assert_eq!(o.session_id.as_deref(), Some("sid-1"));
        let o = transcript(&[INIT, ASSISTANT]).outcome(Exit::Code(0), "");
        assert_eq!(
            o.error.as_deref(),
            Some("Claude Code exited without a result: partial")
        );
        assert_eq!(o.exit, Exit::Code(1));
    }
}
