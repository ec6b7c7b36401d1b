//! `kubectl agents` (crate `cli/`) against the local control plane, with real agents: the README's two-level tree
//! drawn by `tree` (compared with golden files, ages masked), followed by `tree -w --until-idle` and read back by
//! `logs`; then `start --wait` of a failing agent, `stop` of a running one, and bad input that creates nothing.

use std::process::Stdio;
use std::time::Duration;

use crds::{AgentJob, AgentSession, SessionPhase};
use e2e::anthropic::{FakeAnthropic, Gate, Reply, Request};
use e2e::local_agents::{ProcessNode, claude_blueprint, target_bin};
use e2e::stack::agent_processes;
use e2e::{kubeconfig_path, wait_for, with_temp_ns};
use kube::{Api, Client, ResourceExt};

const TIMEOUT: Duration = Duration::from_secs(180);

/// What one run of `kubectl-agents` gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `kubectl-agents ARGS -n NS` with the suite's kubeconfig, bounded by TIMEOUT.
async fn agents(ns: &str, args: &[&str]) -> Run {
    match try_agents(ns, args).await {
        Some(run) => run,
        None => {
            // What the tree looked like when the command gave up waiting, to tell a stuck tree from a stuck command.
            let mut seen = String::new();
            for what in [vec!["tree"], vec!["describe", "planner"]] {
                if let Some(run) = Box::pin(try_agents(ns, &what)).await {
                    seen.push_str(&format!("kubectl-agents {what:?}: {run}\n"));
                }
            }
            panic!("kubectl-agents {args:?} did not end within {TIMEOUT:?}; then:\n{seen}")
        }
    }
}

/// The same; None when it did not end within TIMEOUT (it is killed).
async fn try_agents(ns: &str, args: &[&str]) -> Option<Run> {
    let mut cmd = tokio::process::Command::new(target_bin("kubectl-agents"));
    cmd.args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(kubeconfig_path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .ok()?
        .expect("run kubectl-agents (cargo build -p kubectl-agents)");
    Some(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Ages ("age 42s", "age 3m12s") vary from run to run, and so does cost (the planner is resumed once or twice,
/// as its children's callbacks arrive together or apart): masked.
fn mask_ages(tree: &str) -> String {
    tree.lines()
        .map(|line| {
            let mut words: Vec<&str> = line.split("  ").collect();
            for w in words.iter_mut() {
                if w.starts_with("age ") {
                    *w = "age AGE";
                } else if w.starts_with("cost $") {
                    *w = "cost $COST";
                }
            }
            words.join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Compares with e2e/tests/golden/NAME; `UPDATE_GOLDEN=1` rewrites it after an intended change.
fn golden(name: &str, got: &str) {
    let path = e2e::workspace_root().join("e2e/tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "tree differs from {}", path.display());
}

/// What `logs` of the README's planner must show: a start_agent_session call per child, each child's callback in
/// a resume prompt, and the final summary.
fn assert_conversation(logs: &Run) {
    for child in ["haiku-writer", "limerick-writer"] {
        let call = logs.stdout.lines().any(|l| {
            l.starts_with("tool call: mcp__agents__start_agent_session ")
                && l.contains(&format!("\"session_name\":\"{child}\""))
        });
        assert!(call, "no start_agent_session call for {child}:\n{logs}");
        assert!(
            logs.stdout
                .contains(&format!("child agent session \"{child}\"")),
            "no callback message from {child}:\n{logs}"
        );
    }
    assert!(
        logs.stdout.contains("My children reported back"),
        "the final result:\n{logs}"
    );
}

/// The README's example (examples/ applied as they are, the demo model behind the Secret and ConfigMap
/// "anthropic"), shown by `kubectl agents` while and after it runs.
///
/// One test, one stack: the example's blueprint lets its Pods run on any process node, so a second node beside it
/// (another test of this file) could take them and end them with its test.
#[tokio::test]
async fn kubectl_agents_against_real_agents() {
    with_temp_ns("cli", |client, ns| async move {
        let gate = Gate::default();
        let held = gate.clone();
        // The demo model, except for the prompts of the second part.
        let fake = FakeAnthropic::start(move |r: &Request| {
            let said = r.user_texts().join("\n");
            if said.contains(FAIL) {
                Reply::Error(400, "scripted failure for the cli test".into())
            } else if said.contains(HOLD) {
                Reply::After(held.clone(), Box::new(Reply::text("woke up")))
            } else {
                e2e::demo_model::reply(r)
            }
        })
        .await;
        let (_gateway, node, _operator) =
            agent_processes(&client, &ns, &["--default-storage-class"]).await;
        e2e::stack::apply_readme_example(&ns, &fake, &node).await;
        the_readme_tree(&client, &ns).await;
        starting_waiting_stopping_and_bad_input(&client, &ns, &fake, &node).await;
        gate.open();
    })
    .await;
}

/// A prompt the stand-in answers with an API error, and one it holds until the end of the test.
const FAIL: &str = "FAIL-FOR-THE-CLI-TEST";
const HOLD: &str = "HOLD-FOR-THE-CLI-TEST";
/// The blueprint of the second part: Pods pinned to this test's process node (the README's blueprint lets them go to
/// any process node, another test's included).
const BLUEPRINT: &str = "cli-claude";

/// `tree` and `logs` of the README's example.
async fn the_readme_tree(client: &Client, ns: &str) {
    // Started at once, before the session exists: it waits for it, redraws, and ends when the tree is done.
    // `logs -f` beside it follows the planner's jobs as they come, and ends with the tree as well.
    let (watched, followed) = tokio::join!(
        agents(ns, &["tree", "planner", "-w", "--until-idle"]),
        agents(ns, &["logs", "planner", "-f", "--full"]),
    );
    assert_eq!(watched.code, Some(0), "{watched}");
    let frames: Vec<&str> = watched.stdout.split("\n\n").collect();
    assert!(frames.len() > 1, "one frame per change: {watched}");
    let last = frames.last().unwrap();
    assert!(last.starts_with("✔ planner  Idle"), "{watched}");

    // The tree as it stands: the planner's jobs are its Start and one or two callback deliveries (the children
    // may call back together or apart), so the count is checked against the API and then masked.
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let planner_jobs = jobs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|j| j.spec.session_name == "planner")
        .count();
    assert!(
        (2..=3).contains(&planner_jobs),
        "planner jobs: {planner_jobs}"
    );
    let count = format!("  jobs {planner_jobs}  ");
    for (args, file) in [
        (vec!["tree", "planner"], "readme-tree.txt"),
        (vec!["tree", "--ascii"], "readme-tree-ascii.txt"),
    ] {
        let tree = agents(ns, &args).await;
        assert_eq!(tree.code, Some(0), "{tree}");
        let first = tree.stdout.lines().next().unwrap_or_default();
        assert!(
            first.contains(&count),
            "planner line {first:?} shows {count:?}"
        );
        let masked = mask_ages(&tree.stdout).replacen(&count, "  jobs N  ", 1);
        golden(file, &masked);
    }

    // The planner's conversation, followed and read back after: its tool calls, and the callback message it was
    // resumed with.
    assert_eq!(followed.code, Some(0), "{followed}");
    assert_conversation(&followed);
    let logs = agents(ns, &["logs", "planner"]).await;
    assert_eq!(logs.code, Some(0), "{logs}");
    assert_conversation(&logs);
    assert!(
        logs.stdout
            .contains("=== planner-start (Start, Succeeded) ==="),
        "{logs}"
    );
    assert!(logs.stdout.contains("(Resume, Succeeded) ==="), "{logs}");
    // The raw stream is Claude Code's own JSON.
    let raw = agents(ns, &["logs", "planner", "--job", "planner-start", "--raw"]).await;
    assert!(raw.stdout.contains(r#""type":"assistant""#), "{raw}");
}

/// `start --wait` of an agent that fails, `stop` of one that runs, and bad input.
async fn starting_waiting_stopping_and_bad_input(
    client: &Client,
    ns: &str,
    fake: &FakeAnthropic,
    node: &ProcessNode,
) {
    let blueprint = claude_blueprint(
        BLUEPRINT,
        node,
        &fake.base_url_per_session(),
        "You are a CLI test agent.",
    );
    e2e::gateway::create(client, ns, "AgentBlueprint", blueprint).await;
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let names = || async {
        let j: Vec<String> = jobs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| o.name_any())
            .collect();
        let s: Vec<String> = sessions
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| o.name_any())
            .collect();
        (j, s)
    };
    let before = names().await;
    // Bad input: a clear message, a non-zero exit, and nothing created.
    for (args, message) in [
        (
            vec!["start", "Bad_Name", "--blueprint", BLUEPRINT, "-p", "x"],
            "is not valid",
        ),
        (
            vec!["start", "fine", "--blueprint", "missing", "-p", "x"],
            "blueprint 'missing' does not exist",
        ),
        (vec!["start", "fine", "--blueprint", BLUEPRINT], "no prompt"),
        (
            vec!["start", "fine", "--blueprint", BLUEPRINT, "-p", "  "],
            "the prompt is empty",
        ),
        (
            vec!["resume", "nobody", "-p", "x"],
            "session 'nobody' does not exist",
        ),
    ] {
        let run = agents(ns, &args).await;
        assert_eq!(run.code, Some(3), "{args:?}: {run}");
        assert!(
            run.stderr.contains(message),
            "{args:?} should say {message:?}: {run}"
        );
    }
    assert_eq!(names().await, before, "bad input created something");

    // A failing agent: exit 1 and its error.
    let failed = agents(
        ns,
        &[
            "start",
            "broken",
            "--blueprint",
            BLUEPRINT,
            "-p",
            FAIL,
            "--wait",
        ],
    )
    .await;
    assert_eq!(failed.code, Some(1), "{failed}");
    assert!(
        failed.stderr.contains("scripted failure for the cli test"),
        "{failed}"
    );

    // A running agent, stopped.
    let started = agents(
        ns,
        &["start", "sleeper", "--blueprint", BLUEPRINT, "-p", HOLD],
    )
    .await;
    assert_eq!(started.code, Some(0), "{started}");
    fake.wait_for("a model call of sleeper", TIMEOUT, |r| {
        r.user_texts().join("\n").contains(HOLD)
    })
    .await;
    let stopped = agents(ns, &["stop", "sleeper"]).await;
    assert_eq!(stopped.code, Some(0), "{stopped}");
    assert!(stopped.stdout.contains("stopping sleeper-"), "{stopped}");
    wait_for(&sessions, "sleeper", TIMEOUT, |s: Option<&AgentSession>| {
        s.and_then(|s| s.status.as_ref()?.phase) == Some(SessionPhase::Stopped)
    })
    .await;
    let described = agents(ns, &["describe", "sleeper"]).await;
    assert!(
        described.stdout.contains("Phase:            Stopped"),
        "{described}"
    );
    // Its Events are the operator's, on the session and its jobs: a job's start is told once, on the job.
    assert!(
        described
            .stdout
            .lines()
            .any(|l| l.contains("AgentJob/sleeper-") && l.contains("  Started  ")),
        "{described}"
    );
}
