//! The processes a test with real agents runs beside (the gateway in token mode, a process node, an operator whose
//! agent Pods use that gateway), and the README's example tree set up as `make run` does it.

use kube::Client;

use crate::anthropic::FakeAnthropic;
use crate::gateway::Gateway;
use crate::local_agents::ProcessNode;
use crate::operator::{Operator, Options};

/// The CRDs, then the gateway (token mode, watching `ns`), a process node started with `node_flags` and an operator
/// whose agent Pods call that gateway. Each stops when dropped.
pub async fn agent_processes(
    client: &Client,
    ns: &str,
    node_flags: &[&str],
) -> (Gateway, ProcessNode, Operator) {
    crate::agents::install_crds(client).await;
    let gateway = Gateway::start(&[&format!("--namespace={ns}")]).await;
    let node = ProcessNode::start_with(client, ns, node_flags).await;
    let options = Options {
        mcp_url: Some(gateway.url()),
        ..Default::default()
    };
    let operator = Operator::start_with(ns, options).await;
    (gateway, node, operator)
}

/// The README's example in `ns`: the Secret and ConfigMap "anthropic" pointing at `fake` (the demo model stands in
/// for the API), then examples/local-claude-blueprint.yaml and examples/tree-job.yaml applied as they are. The
/// process node must have been started with `--default-storage-class` (the example's claims name no class). The
/// example's Pods select any process node, so the namespace is first pinned to `node`: other tests' process nodes,
/// running at the same time, must not take them.
pub async fn apply_readme_example(ns: &str, fake: &FakeAnthropic, node: &ProcessNode) {
    node.pin_namespace(ns).await;
    let base_url = format!("--from-literal=base-url=http://{}", fake.addr);
    for args in [
        vec![
            "create",
            "secret",
            "generic",
            "anthropic",
            "--from-literal=api-key=sk-test",
            "-n",
            ns,
        ],
        vec!["create", "configmap", "anthropic", &base_url, "-n", ns],
    ] {
        let out = crate::chart::kubectl(&args, None).await;
        assert!(out.ok, "kubectl {args:?}: {}", out.stderr);
    }
    let examples = crate::workspace_root().join("examples");
    for file in ["local-claude-blueprint.yaml", "tree-job.yaml"] {
        let path = examples.join(file).to_string_lossy().into_owned();
        let out = crate::chart::kubectl(&["apply", "-n", ns, "-f", &path], None).await;
        assert!(out.ok, "apply {file}: {}", out.stderr);
    }
}
