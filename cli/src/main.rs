//! `kubectl agents`: a kubectl plugin for agent trees. It talks to the API server directly (kubeconfig and
//! namespace flags as kubectl reads them) and shows sessions as trees, an agent's conversation as text, and starts,
//! resumes and stops sessions. See docs/cli.md.

mod context;
mod describe;
mod error;
mod forest;
mod jobs;
mod live;
mod logs;
mod naming;
mod snapshot;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use crds::JobType;
use serde::Serialize;

use crate::context::{Cluster, ClusterArgs};
use crate::error::{CliError, EXIT_ERROR, Result};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-agents",
    bin_name = "kubectl agents",
    version,
    about = "Agent trees on Kubernetes: \
    show them, read their agents' conversations, start, resume and stop sessions"
)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

/// The prompt of a job: given inline or read from a file (`-` for standard input).
#[derive(Debug, clap::Args)]
struct PromptArgs {
    /// The prompt.
    #[arg(short = 'p', long, conflicts_with = "file")]
    prompt: Option<String>,
    /// A file holding the prompt (`-` for standard input).
    #[arg(short = 'f', long, value_name = "FILE")]
    file: Option<PathBuf>,
}

impl PromptArgs {
    fn read(&self) -> Result<String> {
        match (&self.prompt, &self.file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                std::io::read_to_string(std::io::stdin()).map_err(|e| {
                    CliError::Invalid(format!("reading the prompt from standard input: {e}"))
                })
            }
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                CliError::Invalid(format!(
                    "cannot read the prompt file {}: {e}",
                    path.display()
                ))
            }),
            (None, None) => Err(CliError::Invalid(
                "no prompt: give one with -p PROMPT or -f FILE".into(),
            )),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The tree under SESSION, or every root and its descendants.
    Tree {
        session: Option<String>,
        /// ASCII lines and marks instead of box drawing.
        #[arg(long)]
        ascii: bool,
        /// Redraw on every change (from a watch).
        #[arg(short = 'w', long)]
        watch: bool,
        /// With -w: exit once the tree is idle with nothing queued or on its way.
        #[arg(long, requires = "watch")]
        until_idle: bool,
        #[arg(short = 'o', long, conflicts_with = "watch")]
        output: Option<Output>,
    },
    /// The agent's conversation in a session's jobs, as readable text.
    Logs {
        session: String,
        /// Only this job of the session.
        #[arg(long)]
        job: Option<String>,
        /// Follow the running job, then the session's next jobs, until the tree under it is idle.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The stream as the agent wrote it.
        #[arg(long)]
        raw: bool,
        /// Tool results and prompts whole, not shortened.
        #[arg(long)]
        full: bool,
    },
    /// Start a new session with its first prompt (creates an AgentJob of type Start).
    Start {
        name: String,
        #[arg(long)]
        blueprint: String,
        #[command(flatten)]
        prompt: PromptArgs,
        /// The parent session.
        #[arg(long)]
        parent: Option<String>,
        /// Call the parent back when the job ends (needs --parent).
        #[arg(long, requires = "parent")]
        callback: bool,
        /// Working directory of the agent, relative to the session workspace.
        #[arg(long)]
        project_dir: Option<String>,
        /// Wait for the job to end; the exit status is its outcome (0 succeeded, 1 failed, 2 stopped).
        #[arg(long)]
        wait: bool,
    },
    /// Continue a session with a new prompt (creates an AgentJob of type Resume).
    Resume {
        name: String,
        #[command(flatten)]
        prompt: PromptArgs,
        /// Wait for the job to end; the exit status is its outcome (0 succeeded, 1 failed, 2 stopped).
        #[arg(long)]
        wait: bool,
    },
    /// Stop a session: its running and waiting jobs are deleted, the operator stops their Pods.
    Stop { name: String },
    /// The result of a session's last job that ended.
    Result {
        name: String,
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// A session, its jobs in run order, its callback queue, conditions and Events.
    Describe {
        name: String,
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// Shell completion script.
    Completion { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<i32> {
    if let Command::Completion { shell } = cli.command {
        let mut script = Vec::new();
        // For the binary itself: `kubectl-agents` is the name a shell completes.
        clap_complete::generate(
            shell,
            &mut Cli::command().bin_name("kubectl-agents"),
            "kubectl-agents",
            &mut script,
        );
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(&script);
        return Ok(0);
    }
    // Input that needs no cluster is checked first: bad input fails the same with or without one.
    let new_job = match &cli.command {
        Command::Start {
            name,
            blueprint,
            prompt,
            parent,
            callback,
            project_dir,
            ..
        } => Some(jobs::NewJob {
            job_type: JobType::Start,
            session: name.clone(),
            prompt: prompt.read()?,
            blueprint: Some(blueprint.clone()),
            parent: parent.clone(),
            callback: *callback,
            project_dir: project_dir.clone(),
        }),
        Command::Resume { name, prompt, .. } => Some(jobs::NewJob {
            job_type: JobType::Resume,
            session: name.clone(),
            prompt: prompt.read()?,
            blueprint: None,
            parent: None,
            callback: false,
            project_dir: None,
        }),
        _ => None,
    };
    if let Some(job) = &new_job {
        job.check()?;
    }
    if cli.cluster.all_namespaces && !matches!(cli.command, Command::Tree { session: None, .. }) {
        return Err(CliError::Invalid(
            "-A works with `tree` without a SESSION only".into(),
        ));
    }
    let cluster = cli.cluster.connect().await?;
    let now = jiff::Timestamp::now();
    match cli.command {
        Command::Tree {
            session,
            ascii,
            watch,
            until_idle,
            output,
        } => {
            let namespace = (!cli.cluster.all_namespaces).then_some(cluster.namespace.as_str());
            tree(
                &cluster,
                namespace,
                session.as_deref(),
                ascii,
                watch,
                until_idle,
                output,
            )
            .await
        }
        Command::Logs {
            session,
            job,
            follow,
            raw,
            full,
        } => {
            logs::run(
                &cluster,
                &logs::Options {
                    session,
                    job,
                    follow,
                    raw,
                    full,
                },
            )
            .await?;
            Ok(0)
        }
        Command::Start { wait, .. } | Command::Resume { wait, .. } => {
            let job = new_job.expect("made above");
            let name = jobs::create(&cluster, &job).await?;
            eprintln!(
                "agentjob.{}/{name} created (session {})",
                crds::GROUP,
                job.session
            );
            if !wait {
                return Ok(0);
            }
            let outcome = jobs::wait(&cluster, &name, &job.session).await?;
            match &outcome {
                jobs::Outcome::Succeeded(result) => println!("{result}"),
                jobs::Outcome::Failed(e) | jobs::Outcome::Stopped(e) => eprintln!("{e}"),
            }
            Ok(outcome.code())
        }
        Command::Stop { name } => {
            let stopped = jobs::stop(&cluster, &name).await?;
            if stopped.is_empty() {
                println!("session {name} is not running; nothing to stop");
            } else {
                println!("session {name}: stopping {}", stopped.join(", "));
            }
            Ok(0)
        }
        Command::Result { name, output } => {
            let session = describe::session(&cluster, &name).await?;
            let status = session.status.unwrap_or_default();
            if let Some(format) = output {
                let data = serde_json::json!({
                    "session": name,
                    "phase": status.phase.map(|p| p.as_str()),
                    "lastJob": status.last_job,
                    "result": status.result,
                    "resultTruncated": status.result_truncated.unwrap_or(false),
                });
                print_data(&data, format)?;
                return Ok(0);
            }
            match status.result {
                Some(r) => {
                    println!("{r}");
                    Ok(0)
                }
                None => Err(CliError::NotFound(format!(
                    "session '{name}' has no result yet (phase {})",
                    status.phase.map(|p| p.as_str()).unwrap_or("Unknown")
                ))),
            }
        }
        Command::Describe { name, output } => {
            let d = describe::describe(&cluster, &name).await?;
            match output {
                Some(format) => print_data(&d, format)?,
                None => print!("{}", describe::render(&d, now)),
            }
            Ok(0)
        }
        Command::Completion { .. } => unreachable!("handled above"),
    }
}

fn print_data(data: &impl Serialize, format: Output) -> Result<()> {
    let text = match format {
        Output::Json => serde_json::to_string_pretty(data)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| CliError::Other(e.to_string()))?,
        Output::Yaml => {
            serde_yaml_ng::to_string(data).map_err(|e| CliError::Other(e.to_string()))?
        }
    };
    print!("{text}");
    Ok(())
}

/// `tree`: once, or on every change with -w (clearing the screen when it is a terminal).
async fn tree(
    cluster: &Cluster,
    namespace: Option<&str>,
    session: Option<&str>,
    ascii: bool,
    watch: bool,
    until_idle: bool,
    output: Option<Output>,
) -> Result<i32> {
    if let Some(s) = session {
        validate::session_name("session name", s)?;
    }
    let mut live = live::Live::start(&cluster.client, namespace).await?;
    let ns = namespace.unwrap_or(&cluster.namespace);
    let terminal = std::io::stdout().is_terminal();
    let mut last_frame = String::new();
    loop {
        let snap = live.snapshot();
        let style = forest::Style {
            ascii,
            now: jiff::Timestamp::now(),
        };
        let trees = forest::trees(&snap, ns, session);
        let frame = match (&trees, namespace) {
            (Some(t), _) if !t.is_empty() => forest::render(t, style),
            (Some(_), Some(ns)) => format!("no agent sessions in namespace {ns}\n"),
            (Some(_), None) => "no agent sessions\n".to_string(),
            (None, _) if !watch => {
                return Err(CliError::NotFound(format!(
                    "session '{}' does not exist in namespace {ns}",
                    session.unwrap_or_default()
                )));
            }
            (None, _) => format!(
                "session '{}' does not exist in namespace {ns} yet\n",
                session.unwrap_or_default()
            ),
        };
        if !watch {
            match output {
                Some(format) => print_data(&trees.unwrap_or_default(), format)?,
                None => print!("{frame}"),
            }
            return Ok(0);
        }
        if frame != last_frame {
            let mut out = std::io::stdout().lock();
            let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
            let separator = if terminal || last_frame.is_empty() {
                ""
            } else {
                "\n"
            };
            let _ = write!(out, "{clear}{separator}{frame}");
            let _ = out.flush();
            last_frame = frame;
        }
        if until_idle {
            let idle = match session {
                Some(s) => snap.tree_is_idle(ns, s),
                None => snap.roots().iter().all(|r| {
                    use kube::ResourceExt;
                    snap.tree_is_idle(&r.namespace().unwrap_or_default(), &r.name_any())
                }),
            };
            if idle {
                return Ok(0);
            }
        }
        live.changed().await?;
    }
}
