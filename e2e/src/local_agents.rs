//! Real agents in end-to-end tests: a process node per test (so tests in parallel never share a node), the real
//! Claude Code CLI (`make claude` installs it from npm into `.local/claude`), and blueprints whose Pods run
//! `agent-runner` on that node against the Anthropic stand-in.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::procnode::STORAGE_CLASS;
use crate::{kubeconfig_path, local_bin, wait_for, workspace_root};

/// The Claude Code CLI installed by `make claude`.
pub fn claude_bin() -> PathBuf {
    let path = workspace_root().join(".local/claude/node_modules/.bin/claude");
    assert!(
        path.exists(),
        "no Claude Code CLI at {}: run `make claude`",
        path.display()
    );
    path
}

/// Where the workspace's binaries are (agent-runner, process-node).
pub fn target_bin(name: &str) -> PathBuf {
    let path = workspace_root().join("target/debug").join(name);
    assert!(
        path.exists(),
        "no {} (run `cargo build --bins`)",
        path.display()
    );
    path
}

/// One process node, killed (and its Node deleted) when dropped. Its Pods' logs stay in `root` for a failed
/// test's reader: the path is printed.
pub struct ProcessNode {
    child: Child,
    pub name: String,
    pub root: PathBuf,
}

impl ProcessNode {
    /// Starts a process node named after the test namespace and waits until its Node is Ready.
    pub async fn start(client: &Client, ns: &str) -> ProcessNode {
        Self::start_with(client, ns, &[]).await
    }

    /// Starts one with extra flags (for example `--default-storage-class`).
    pub async fn start_with(client: &Client, ns: &str, flags: &[&str]) -> ProcessNode {
        let name = format!("proc-{ns}");
        let root = workspace_root()
            .join("target/e2e-logs/process-nodes")
            .join(&name);
        std::fs::create_dir_all(&root).expect("process node folder");
        let log = std::fs::File::create(root.join("process-node.log")).expect("process node log");
        let path = format!(
            "{}:{}:{}",
            workspace_root().join("target/debug").display(),
            claude_bin().parent().expect("bin folder").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(target_bin("process-node"))
            .args(["--node", &name, "--root"])
            .arg(&root)
            .args(flags)
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .env("PATH", path)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start process-node");
        let node = ProcessNode { child, name, root };
        let nodes: Api<Node> = Api::all(client.clone());
        wait_for(
            &nodes,
            &node.name,
            Duration::from_secs(30),
            |n: Option<&Node>| {
                n.and_then(|n| {
                    n.status
                        .as_ref()?
                        .conditions
                        .as_ref()?
                        .iter()
                        .find(|c| c.type_ == "Ready")
                        .cloned()
                })
                .is_some_and(|c| c.status == "True")
            },
        )
        .await;
        node
    }

    /// The nodeSelector and tolerations of Pods that must run on this node.
    pub fn scheduling(&self) -> (Value, Value) {
        let (mut selector, tolerations) = crate::procnode::scheduling();
        selector["kubernetes.io/hostname"] = self.name.clone().into();
        (selector, tolerations)
    }

    /// Pins every Pod of namespace `ns` to this node (the PodNodeSelector admission plugin of the local control
    /// plane adds the namespace's node selector to each Pod's), for Pods whose own nodeSelector would let any process
    /// node take them.
    pub async fn pin_namespace(&self, ns: &str) {
        let selector = format!(
            "scheduler.alpha.kubernetes.io/node-selector=kubernetes.io/hostname={}",
            self.name
        );
        let out = crate::chart::kubectl(
            &["annotate", "namespace", ns, &selector, "--overwrite"],
            None,
        )
        .await;
        assert!(
            out.ok,
            "pin namespace {ns} to node {}: {}",
            self.name, out.stderr
        );
    }

    /// The log of a Pod's container.
    pub fn log(&self, ns: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(crate::procnode::logs::log_file(
            &self.root, ns, pod, container,
        ))
        .unwrap_or_default()
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        // SIGTERM first, so the node gives back what it changed in the cluster (its default StorageClass mark);
        // SIGKILL if it has not exited within 10 s.
        // SAFETY: a plain kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- process node {}: Pod logs under {} -----\n{}",
                self.name,
                self.root.join("logs").display(),
                std::fs::read_to_string(self.root.join("process-node.log")).unwrap_or_default()
            );
        }
        let _ = Command::new(local_bin("kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args([
                "delete",
                "node",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A blueprint whose sessions run Claude Code (through agent-runner) on `node`, against the Anthropic stand-in at
/// `anthropic_base` (with `$(AGENT_SESSION_NAME)` in it, so the stand-in tells agents apart), with a persistent
/// workspace so that Resume finds the conversation.
pub fn claude_blueprint(
    name: &str,
    node: &ProcessNode,
    anthropic_base: &str,
    system_prompt: &str,
) -> Value {
    let (selector, tolerations) = node.scheduling();
    json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1",
        "kind": "AgentBlueprint",
        "metadata": {"name": name},
        "spec": {
            "description": "Claude Code on the process node",
            "systemPrompt": system_prompt,
            "podTemplate": {
                "command": ["agent-runner"],
                "env": [
                    {"name": "ANTHROPIC_BASE_URL", "value": anthropic_base},
                    {"name": "ANTHROPIC_API_KEY", "value": "sk-test"},
                    {"name": "DISABLE_TELEMETRY", "value": "1"},
                    {"name": "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "value": "1"},
                    {"name": "AGENT_CLAUDE_BIN", "value": claude_bin().display().to_string()},
                ],
                "nodeSelector": selector,
                "tolerations": tolerations,
                "workspace": {"size": "1Gi", "storageClassName": STORAGE_CLASS},
            },
        },
    })
}

/// A blueprint `name` whose Pods run `agent-runner exec -- sh -c SCRIPT` on `node`, with a workspace claim: a
/// generic agent (see runner/src/generic.rs for its contract: result, session id and usage files).
pub async fn create_exec_blueprint(
    client: &Client,
    ns: &str,
    name: &str,
    script: &str,
    node: &ProcessNode,
) {
    let (selector, tolerations) = node.scheduling();
    crate::gateway::create(
        client,
        ns,
        "AgentBlueprint",
        json!({
            "metadata": {"name": name},
            "spec": {"podTemplate": {
                "command": ["agent-runner", "exec", "--", "sh", "-c", script],
                "nodeSelector": selector, "tolerations": tolerations,
                "workspace": {"size": "1Gi", "storageClassName": crate::procnode::STORAGE_CLASS},
            }},
        }),
    )
    .await;
}
