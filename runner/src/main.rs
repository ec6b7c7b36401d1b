//! `agent-runner`: the entrypoint of agent Pods. It reads what the operator put in the Pod, runs the agent for one
//! job (Claude Code by default, or any command that follows the same contract), streams the agent's output to the
//! Pod log, reports the final text and the agent's session id to the gateway, writes the termination message as a
//! fallback, and exits 0 on success or non-zero with the agent's error.

mod claude;
mod generic;
mod invocation;
mod mcp_config;
mod outcome;
mod process;
mod progress;
mod report;
mod temporary;
mod trace;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use tokio::process::Command;
use tracing::Instrument;

use invocation::{Invocation, JobType};
use outcome::{Exit, Outcome};
use report::Reported;

#[derive(Parser, Debug)]
#[command(
    name = "agent-runner",
    version,
    about = "Entrypoint of agent Pods: runs the agent for one AgentJob and reports its result"
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Run Claude Code (the default): `claude -p` with the job's prompt, resuming the session's conversation on
    /// Resume jobs. Arguments after `--` go to claude as they are (for example `--model`, `--allowedTools`).
    Claude {
        /// The Claude Code executable.
        #[arg(long, env = "AGENT_CLAUDE_BIN", default_value = "claude")]
        claude: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run any command that follows the runner's contract: prompt on stdin, result in $AGENT_RESULT_FILE (or on
    /// stdout), session id in $AGENT_SESSION_ID_FILE, exit code 0 for success.
    Exec {
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    use tracing_subscriber::prelude::*;
    let telemetry = trace::telemetry();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("AGENT_RUNNER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Pod logs are files, not terminals: no colour codes in them.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(telemetry.layer())
        .init();
    let code = run().await;
    // The batch exporter still holds the run's spans.
    telemetry.shutdown();
    code
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let mode = cli.mode.unwrap_or(Mode::Claude {
        claude: std::env::var("AGENT_CLAUDE_BIN").unwrap_or_else(|_| "claude".into()),
        args: Vec::new(),
    });

    let inv = match Invocation::read(|name| std::env::var(name).ok()) {
        Ok(inv) => inv,
        Err(e) => {
            // Nothing ran and there is no job to report to: the termination message carries the reason.
            let outcome = Outcome::failed(Exit::Code(2), format!("agent-runner: {e}"), None);
            let path = std::env::var(crds::contract::env::TERMINATION_LOG)
                .unwrap_or_else(|_| crds::contract::TERMINATION_LOG.into());
            report::termination_message(Path::new(&path), &outcome);
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(session = %inv.session, job = %inv.job, r#type = ?inv.job_type,
        parent = ?inv.parent, resume = ?inv.resume_id, "running the agent");
    if inv.job_type == JobType::Resume && inv.resume_id.is_none() {
        tracing::warn!(
            "this session never reported an agent session id: starting a new conversation"
        );
    }

    let span = trace::run_span(&inv.job, &inv.session);
    let outcome = async {
        let outcome = match prepare(&inv) {
            Err(e) => Outcome::failed(Exit::Code(2), format!("agent-runner: {e}"), None),
            Ok(()) => match mode {
                Mode::Claude { claude, args } => run_claude(&inv, &claude, &args).await,
                Mode::Exec { command } => run_exec(&inv, &command).await,
            },
        };
        finish(&inv, &outcome).await;
        outcome
    }
    .instrument(span.clone())
    .await;
    if outcome.error.is_some() {
        span.record("otel.status_code", "ERROR");
    }
    drop(span);
    ExitCode::from(u8::try_from(outcome.exit_code()).unwrap_or(1))
}

/// The folders the agent needs: its home and scratch folder in the workspace, and its working folder.
fn prepare(inv: &Invocation) -> std::io::Result<()> {
    for dir in [inv.scratch(), inv.work_dir.clone()] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The agent's environment on top of the Pod's: its home in the workspace.
fn agent_command(inv: &Invocation, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(&inv.work_dir).env("HOME", inv.home());
    cmd
}

fn spawn_failure(program: &str, e: std::io::Error) -> Outcome {
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    Outcome::failed(
        Exit::Code(code),
        format!("agent-runner: cannot run {program}: {e}"),
        None,
    )
}

async fn run_claude(inv: &Invocation, claude_bin: &str, extra: &[String]) -> Outcome {
    // Read before anything runs: a price table that cannot be read fails the job with its reason, rather than
    // leaving a budget with no running cost to check.
    let prices = match agent_stream::PriceTable::from_env() {
        Ok(prices) => prices,
        Err(e) => return Outcome::failed(Exit::Code(2), format!("agent-runner: {e}"), None),
    };
    let gateway = inv.mcp_url.as_ref().map(|url| mcp_config::Gateway {
        url: url.clone(),
        session: inv.session.clone(),
        token: inv.token(),
    });
    if gateway.as_ref().is_some_and(|g| g.token.is_none()) {
        tracing::warn!(file = %inv.token_file.display(),
            "no gateway token: the gateway will refuse the agent's calls unless it trusts headers");
    }
    let config = mcp_config::build(&inv.mcp_servers, gateway.as_ref(), |name| {
        std::env::var(name).ok()
    });
    if !config.unresolved.is_empty() {
        tracing::warn!(variables = ?config.unresolved, "MCP configuration names variables that are not set");
    }
    let config_path = inv.scratch().join("mcp.json");
    if let Err(e) = write_private(&config_path, &config.json.to_string()) {
        return Outcome::failed(
            Exit::Code(2),
            format!("agent-runner: cannot write {}: {e}", config_path.display()),
            None,
        );
    }
    if let (JobType::Resume, Some(id)) = (inv.job_type, &inv.resume_id) {
        match claude::adopt_conversation(&inv.home(), &inv.work_dir, id) {
            Ok(Some(from)) => {
                tracing::info!(from = %from.display(), "the conversation continues in this job's folder")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot carry the conversation into this job's folder")
            }
        }
    }
    let mut cmd = agent_command(inv, claude_bin);
    cmd.args(claude::args(inv, &config_path, &config.servers, extra));
    let mut transcript = claude::Transcript::with_prices(prices);
    let so_far: Arc<Mutex<Option<crds::Usage>>> = Arc::default();
    let reporter = progress::Reporter::start(progress_url(inv), inv.token(), {
        let so_far = so_far.clone();
        move || so_far.lock().unwrap_or_else(|e| e.into_inner()).clone()
    });
    let ran = process::run(cmd, &inv.prompt, |line| {
        transcript.observe(line);
        *so_far.lock().unwrap_or_else(|e| e.into_inner()) = transcript.usage();
    })
    .await;
    reporter.stop().await;
    match ran {
        Ok((exit, stderr_tail)) => {
            let api_error = transcript.api_error();
            temporary::classify(transcript.outcome(exit, &stderr_tail), api_error)
        }
        Err(e) => spawn_failure(claude_bin, e),
    }
}

async fn run_exec(inv: &Invocation, command: &[String]) -> Outcome {
    let files = generic::Files::in_dir(&inv.scratch());
    for (_, path) in files.env() {
        let _ = std::fs::remove_file(&path);
    }
    let mut cmd = agent_command(inv, &command[0]);
    cmd.args(&command[1..]).envs(files.env());
    let mut output = generic::Output::default();
    let reporter = progress::Reporter::start(progress_url(inv), inv.token(), {
        let files = files.clone();
        move || files.read_usage()
    });
    let ran = process::run(cmd, &inv.prompt, |line| output.push(line)).await;
    reporter.stop().await;
    match ran {
        Ok((exit, stderr_tail)) => generic::outcome(
            exit,
            std::fs::read_to_string(&files.result).ok(),
            std::fs::read_to_string(&files.session_id).ok(),
            output,
            &stderr_tail,
            inv.resume_id.as_deref(),
        )
        .with_usage(files.read_usage()),
        Err(e) => spawn_failure(&command[0], e),
    }
}

/// Where usage reports go while the agent runs: the job's result endpoint (with the progress flag).
fn progress_url(inv: &Invocation) -> Option<String> {
    inv.mcp_url
        .as_ref()
        .map(|mcp| crds::contract::result_url(mcp, &inv.namespace, &inv.job))
}

/// Reports the outcome to the gateway and writes the termination message.
async fn finish(inv: &Invocation, outcome: &Outcome) {
    report::termination_message(&inv.termination_log, outcome);
    match &outcome.error {
        None => {
            tracing::info!(session_id = ?outcome.session_id, bytes = outcome.result.len(), "the agent finished")
        }
        Some(e) => tracing::error!(exit = %outcome.exit, error = %e, "the agent failed"),
    }
    let Some(mcp_url) = &inv.mcp_url else {
        tracing::warn!("no AGENT_MCP_URL: the result is left to the termination message");
        return;
    };
    let url = crds::contract::result_url(mcp_url, &inv.namespace, &inv.job);
    let token = inv.token();
    let reported = report::to_gateway(&url, token.as_deref(), outcome, &report::Retry::default())
        .instrument(trace::report_span("report result"))
        .await;
    match reported {
        Reported::Accepted => tracing::info!(%url, "result reported"),
        Reported::Refused(code, why) => {
            tracing::error!(%url, code, %why, "the gateway refused the result; the termination message remains")
        }
        Reported::GaveUp(why) => {
            tracing::error!(%url, %why, "the gateway could not be reached; the termination message remains")
        }
    }
}

/// Writes a file only its owner can read (the MCP configuration holds the gateway token).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let cli = Cli::parse_from(["agent-runner"]);
        assert!(cli.mode.is_none());
        let cli = Cli::parse_from(["agent-runner", "claude", "--", "--model", "opus"]);
        assert!(matches!(cli.mode, Some(Mode::Claude { args, .. }) if args == ["--model", "opus"]));
        let cli = Cli::parse_from(["agent-runner", "exec", "--", "sh", "-c", "echo hi"]);
        assert!(
            matches!(cli.mode, Some(Mode::Exec { command }) if command == ["sh", "-c", "echo hi"])
        );
        assert!(Cli::try_parse_from(["agent-runner", "exec"]).is_err());
    }
}
