//! What each tool answers and how it fails, in words: the part of docs/mcp-tools.md that no input schema carries.
//! The names, descriptions and parameters come from the served tools themselves (see reference.rs); this is the
//! hand-written rest. Change an entry with the tool's behaviour and run `make crds`; a test fails when a served tool
//! has no entry or an entry names no served tool.

/// The result and the errors of one tool, as Markdown.
pub struct Outcome {
    pub tool: &'static str,
    /// What a successful call returns.
    pub result: &'static str,
    /// The tool's own errors (the ones every tool shares are listed once in the reference).
    pub errors: &'static [&'static str],
}

pub const OUTCOMES: &[Outcome] = &[
    Outcome {
        tool: "delete_all_agent_sessions",
        result: "A sentence: `Deleted N agent sessions and M agent jobs in namespace 'NS'.`, followed by `Your own \
                 session 'S' was kept.` when the caller has a session, and, for an agent confined to its tree, by \
                 a sentence saying that only the sessions below it were deleted. Jobs are deleted first, so running sessions \
                 are stopped (their parents are called back with a Stopped outcome).",
        errors: &[
            "The API server refused a delete: the error names the object and carries the server's message; \
                   what was deleted before it stays deleted.",
        ],
    },
    Outcome {
        tool: "get_agent_session_result",
        result: "The text result the agent reported for the session's last ended run, as is; `Session 'S' finished \
                 without reporting a result.` when it reported none.",
        errors: &[
            "`session_name` is not a valid session name.",
            "The session does not exist, or it is outside the caller's reach (an agent confined to its tree): one \
             text for both, so other trees stay unseen.",
            "The session is still running: poll get_agent_session_status until it is `finished`.",
            "The session was stopped before its last run finished (an older run's result is not returned in its \
             place).",
            "The last run failed: the error names the job, its reason and error message, followed by the partial \
             result when the agent reported one.",
        ],
    },
    Outcome {
        tool: "get_agent_session_status",
        result: "JSON `{\"status\": \"running\" | \"finished\" | \"not_existent\"}`. A session counts as running \
                 while any of its jobs has not ended (a Start job not yet turned into a session included). With \
                 `wait_seconds` above 0 and a session that is not finished, the answer comes as soon as the status \
                 changes, or with the status at the deadline. A session outside the caller's reach is `not_existent`, \
                 as a missing one is; for an agent confined to its tree that answer also carries a `message` saying \
                 where it may look.",
        errors: &[
            "`session_name` is not a valid session name.",
            "`wait_seconds` is outside 0 to 300.",
        ],
    },
    Outcome {
        tool: "list_agent_blueprints",
        result: "The AgentBlueprints of the caller's namespace, by name, without the disabled ones and without those \
                 that lack one of the X-Agent-Tags. Markdown: a `# Agent Blueprints (N)` heading and a section per \
                 blueprint with its description, tags and MCP servers (a sentence pointing to the default agent \
                 when there are none). JSON: `{\"total\": N, \"agent_blueprints\": [{\"name\", \"description\", \
                 \"tags\", \"mcp_servers\"}]}`.",
        errors: &[],
    },
    Outcome {
        tool: "list_agent_sessions",
        result: "The sessions described above, oldest first, each with its status (`running` or \
                 `finished`), the operator's phase, blueprint, parent and creation time; a session whose Start job \
                 exists but whose AgentSession does not yet is listed as running, phase `Pending`. Markdown: a `# \
                 Agent Sessions (N)` heading and a section per session. JSON: `{\"total\": N, \"sessions\": \
                 [{\"session_name\", \"status\", \"phase\", \"agent_blueprint_name\", \"parent_session_name\", \
                 \"created_at\", \"job_count\"}]}`.",
        errors: &[],
    },
    Outcome {
        tool: "resume_agent_session",
        result: "Creates a Resume AgentJob for the session (the caller's session becomes its parent). Sync mode: \
                 the result of this turn, as get_agent_session_result gives it. Async mode: JSON \
                 `{\"session_name\", \"job_name\", \"status\": \"running\", \"callback\", \"message\"}`. A resume of \
                 a busy session is queued behind its running job. `callback` counts only with `async_mode`.",
        errors: &[
            "`session_name` is not a valid session name, or `prompt` is empty or too long: nothing is created.",
            "`session_name` is the calling session (a session cannot resume itself).",
            "`callback=true` with `async_mode=true` from a caller with no session of its own: there is no one to \
             call back.",
            "The session does not exist (start it with start_agent_session), or it is outside the caller's reach: \
             one text for both.",
            "The API server refused the AgentJob: its admission message.",
            "Sync mode only: the turn did not end within the wait (it keeps running: follow it with \
             get_agent_session_status), its job was deleted (stopped) first, or it failed (reason, error and \
             partial result).",
        ],
    },
    Outcome {
        tool: "start_agent_session",
        result: "Creates a Start AgentJob (the caller's session becomes its parent; the operator creates the \
                 AgentSession). Sync mode: the agent's result, as get_agent_session_result gives it. Async mode: \
                 JSON `{\"session_name\", \"job_name\", \"status\": \"running\", \"callback\", \"message\"}`; with \
                 `callback=true` the result arrives later as a new prompt to the caller's session. `callback` \
                 counts only with `async_mode`: in sync mode the caller already gets the result.",
        errors: &[
            "`session_name` is not a DNS label of at most 60 characters, `prompt` is empty or too long, \
             `agent_blueprint_name` is not a valid object name, or `project_dir` leaves the workspace (`..`) or is \
             longer than 1024 characters: nothing is created.",
            "`session_name` is the calling session.",
            "`callback=true` with `async_mode=true` from a caller with no session of its own.",
            "The blueprint does not exist in the caller's namespace, or it is disabled.",
            "A session (or a Start job) of that name already exists: resume it, or choose another name.",
            "The new session would pass a tree limit of the caller's tree (`maxDepth`, `maxChildren` or \
             `maxActiveChildren` of a blueprint's `limits`, or the gateway's namespace default): the message names \
             the limit, its value and the blueprint or default it comes from; nothing is created.",
            "The API server refused the AgentJob: its admission message.",
            "Sync mode only: the session did not finish within the wait (it keeps running), its job was deleted \
             (stopped) first, or it failed (reason, error and partial result).",
        ],
    },
    Outcome {
        tool: "stop_agent_session",
        result: "JSON `{\"session_name\", \"status\": \"stopping\", \"stopped_jobs\": [...]}`: the session's jobs \
                 that had not ended are deleted, the operator stops their Pods and calls a waiting parent back with \
                 a Stopped outcome. The session is kept and can be resumed. `Session 'S' is not running; nothing to \
                 stop.` when no job was left to stop.",
        errors: &[
            "`session_name` is not a valid session name.",
            "`session_name` is the calling session (a session cannot stop itself).",
            "The session does not exist, or it is outside the caller's reach: one text for both.",
            "The API server refused a delete: its message.",
        ],
    },
];

/// The entry of a tool, if it has one.
pub fn of(tool: &str) -> Option<&'static Outcome> {
    OUTCOMES.iter().find(|o| o.tool == tool)
}
