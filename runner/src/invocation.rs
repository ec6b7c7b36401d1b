//! What the operator gives an agent Pod (see docs/architecture.md): the `AGENT_*` environment and the files beside it
//! (prompt, system prompt, the blueprint's MCP servers). Read through a lookup function so that the parsing is
//! tested without touching the process environment.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crds::McpServer;
use crds::contract::{self, env};

/// What went wrong reading the invocation. Each says which variable or file, so a Pod that fails at start explains
/// itself in its log and termination message.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("{0} is not set: agent-runner runs inside agent Pods made by agent-operator")]
    Missing(&'static str),
    #[error("{var} is invalid: {why}")]
    Invalid { var: &'static str, why: String },
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid MCP server JSON: {source}")]
    McpServers {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    Start,
    Resume,
}

/// One job's run, as the Pod describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub session: String,
    pub job: String,
    pub job_type: JobType,
    pub namespace: String,
    pub parent: Option<String>,
    /// The agent CLI's own session id to continue (Resume jobs of sessions that reported one).
    pub resume_id: Option<String>,
    /// The gateway's MCP endpoint; without it the agent gets no orchestration tools and reports no result.
    pub mcp_url: Option<String>,
    pub prompt: String,
    pub system_prompt: Option<String>,
    pub mcp_servers: BTreeMap<String, McpServer>,
    pub token_file: PathBuf,
    pub workspace: PathBuf,
    /// The agent's working folder: the workspace, or the job's project folder inside it.
    pub work_dir: PathBuf,
    pub termination_log: PathBuf,
}

impl Invocation {
    /// Reads the invocation from `var` (the environment) and the files it names.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Invocation, InvocationError> {
        let get = |name: &'static str| var(name).filter(|v| !v.is_empty());
        let need = |name: &'static str| get(name).ok_or(InvocationError::Missing(name));

        let job_type = match need(env::JOB_TYPE)?.as_str() {
            "Start" => JobType::Start,
            "Resume" => JobType::Resume,
            other => {
                return Err(InvocationError::Invalid {
                    var: env::JOB_TYPE,
                    why: format!("{other:?} is neither Start nor Resume"),
                });
            }
        };
        let files =
            PathBuf::from(get(env::FILES_DIR).unwrap_or_else(|| contract::FILES_DIR.into()));
        let prompt = match get(env::PROMPT) {
            Some(p) => p,
            // Prompts too long for the environment only come as a file.
            None => read_file(&files.join(contract::PROMPT_FILE))?.ok_or(
                InvocationError::Missing("AGENT_PROMPT (or the prompt file)"),
            )?,
        };
        let system_prompt =
            read_file(&files.join(contract::SYSTEM_PROMPT_FILE))?.filter(|s| !s.trim().is_empty());
        let servers_path = files.join(contract::MCP_SERVERS_FILE);
        let mcp_servers = match read_file(&servers_path)? {
            Some(text) if !text.trim().is_empty() => {
                serde_json::from_str(&text).map_err(|source| InvocationError::McpServers {
                    path: servers_path.clone(),
                    source,
                })?
            }
            _ => BTreeMap::new(),
        };
        let workspace =
            PathBuf::from(get(env::WORKSPACE).unwrap_or_else(|| contract::WORKSPACE_DIR.into()));
        let work_dir = match get(env::PROJECT_DIR) {
            Some(dir) => inside(&workspace, &dir).ok_or_else(|| InvocationError::Invalid {
                var: env::PROJECT_DIR,
                why: format!("{dir:?} leaves the workspace {}", workspace.display()),
            })?,
            None => workspace.clone(),
        };
        Ok(Invocation {
            session: need(env::SESSION_NAME)?,
            job: need(env::JOB_NAME)?,
            job_type,
            namespace: need(env::NAMESPACE)?,
            parent: get(env::PARENT_SESSION_NAME),
            resume_id: get(env::RESUME_ID),
            mcp_url: get(env::MCP_URL),
            prompt,
            system_prompt,
            mcp_servers,
            token_file: PathBuf::from(
                get(env::TOKEN_FILE).unwrap_or_else(|| contract::TOKEN_FILE.into()),
            ),
            workspace,
            work_dir,
            termination_log: PathBuf::from(
                get(env::TERMINATION_LOG).unwrap_or_else(|| contract::TERMINATION_LOG.into()),
            ),
        })
    }

    /// The agent's home: inside the workspace, so that a session's later Pods find the agent CLI's configuration
    /// and transcripts (Claude Code keeps them under `~/.claude`) when the workspace is the session's volume.
    pub fn home(&self) -> PathBuf {
        self.workspace.join(".agent-home")
    }

    /// The runner's own scratch folder for this job (MCP configuration, result files of generic agents).
    pub fn scratch(&self) -> PathBuf {
        self.home().join(".agent-runner").join(&self.job)
    }

    /// The gateway token, read afresh (the kubelet rotates the file).
    pub fn token(&self) -> Option<String> {
        std::fs::read_to_string(&self.token_file)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }
}

/// The contents of `path`, or `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<String>, InvocationError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InvocationError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `dir` resolved inside `root` (relative to it, or absolute under it); `None` when it would leave `root`.
fn inside(root: &Path, dir: &str) -> Option<PathBuf> {
    let path = Path::new(dir);
    let relative = if path.is_absolute() {
        path.strip_prefix(root).ok()?
    } else {
        path
    };
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    Some(root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn base(files: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("AGENT_SESSION_NAME", "s1".into()),
            ("AGENT_JOB_NAME", "j1".into()),
            ("AGENT_JOB_TYPE", "Start".into()),
            ("AGENT_NAMESPACE", "ns".into()),
            ("AGENT_FILES_DIR", files.display().to_string()),
            ("AGENT_WORKSPACE", "/ws".into()),
        ]
    }

    /// Sets `key` to `value` in `pairs`, replacing an earlier value.
    fn set(pairs: &mut Vec<(&'static str, String)>, key: &'static str, value: &str) {
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value.into()));
    }

    fn read(pairs: Vec<(&'static str, String)>) -> Result<Invocation, InvocationError> {
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Invocation::read(vars(&refs))
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("runner-inv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_env_and_files() {
        let files = temp("files");
        std::fs::write(files.join("prompt"), "from the file").unwrap();
        std::fs::write(files.join("system-prompt"), "be brief").unwrap();
        std::fs::write(
            files.join("mcp-servers.json"),
            r#"{"docs": {"type": "http", "url": "http://docs/mcp", "headers": {"X-S": "${AGENT_SESSION_NAME}"}}}"#,
        )
        .unwrap();
        let mut pairs = base(&files);
        set(&mut pairs, "AGENT_PARENT_SESSION_NAME", "boss");
        set(&mut pairs, "AGENT_PROJECT_DIR", "repo/sub");
        let inv = read(pairs).unwrap();
        assert_eq!(inv.session, "s1");
        assert_eq!(inv.job_type, JobType::Start);
        assert_eq!(inv.parent.as_deref(), Some("boss"));
        assert_eq!(inv.prompt, "from the file");
        assert_eq!(inv.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(
            inv.mcp_servers["docs"].headers["X-S"],
            "${AGENT_SESSION_NAME}"
        );
        assert_eq!(inv.work_dir, PathBuf::from("/ws/repo/sub"));
        assert_eq!(inv.home(), PathBuf::from("/ws/.agent-home"));
        assert_eq!(inv.token_file, PathBuf::from(contract::TOKEN_FILE));
        assert_eq!(inv.termination_log, PathBuf::from("/dev/termination-log"));
    }

    #[test]
    fn the_prompt_variable_wins_over_the_file_and_missing_files_are_fine() {
        let files = temp("env");
        std::fs::write(files.join("prompt"), "from the file").unwrap();
        let mut pairs = base(&files);
        set(&mut pairs, "AGENT_PROMPT", "from env");
        set(&mut pairs, "AGENT_JOB_TYPE", "Resume");
        set(&mut pairs, "AGENT_RESUME_ID", "abc");
        let inv = read(pairs).unwrap();
        assert_eq!(inv.prompt, "from env");
        assert_eq!(inv.job_type, JobType::Resume);
        assert_eq!(inv.resume_id.as_deref(), Some("abc"));
        assert!(inv.system_prompt.is_none());
        assert!(inv.mcp_servers.is_empty());
    }

    #[test]
    fn missing_and_invalid_input_is_named() {
        let files = temp("bad");
        let err = read(base(&files)).unwrap_err();
        assert!(err.to_string().contains("AGENT_PROMPT"), "{err}");

        let mut pairs = base(&files);
        set(&mut pairs, "AGENT_JOB_TYPE", "Restart");
        set(&mut pairs, "AGENT_PROMPT", "p");
        let err = read(pairs).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"Restart\" is neither Start nor Resume"),
            "{err}"
        );

        let mut pairs = base(&files);
        set(&mut pairs, "AGENT_PROMPT", "p");
        set(&mut pairs, "AGENT_PROJECT_DIR", "../etc");
        let err = read(pairs).unwrap_err();
        assert!(err.to_string().contains("leaves the workspace"), "{err}");

        std::fs::write(files.join("mcp-servers.json"), "{not json").unwrap();
        let mut pairs = base(&files);
        set(&mut pairs, "AGENT_PROMPT", "p");
        let err = read(pairs).unwrap_err();
        assert!(
            err.to_string().contains("not valid MCP server JSON"),
            "{err}"
        );
    }

    #[test]
    fn project_dirs_stay_inside_the_workspace() {
        let root = Path::new("/ws");
        assert_eq!(inside(root, "a/b"), Some(PathBuf::from("/ws/a/b")));
        assert_eq!(inside(root, "/ws/a"), Some(PathBuf::from("/ws/a")));
        assert_eq!(inside(root, "./a"), Some(PathBuf::from("/ws/./a")));
        assert_eq!(inside(root, "/etc"), None);
        assert_eq!(inside(root, "a/../../b"), None);
    }
}
