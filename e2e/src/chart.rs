//! Helpers of the Helm chart tests (`tests/chart.rs`): helm and kubectl against the cluster under test, copies of the
//! chart to change in a test, and the API server's answer to "may this ServiceAccount do that?".

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::{kubeconfig_path, local_bin, wait_for, workspace_root};

/// How long helm and kubectl calls, and the waits on what they create, may take.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The chart in the work tree.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/agent-orchestrator")
}

/// What a command printed and whether it succeeded.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

async fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(local_bin(tool));
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}); build it with `make cluster-build`"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{tool} stdin: {e}"));
    }
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{tool} {} took over {TIMEOUT:?}", args.join(" ")))
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `helm ARGS` against the cluster under test.
pub async fn helm(args: &[&str]) -> Output {
    run("helm", args, None).await
}

/// Runs `helm ARGS` and returns its standard output; panics with its error output when it fails.
pub async fn helm_ok(args: &[&str]) -> String {
    let out = helm(args).await;
    assert!(
        out.ok,
        "helm {} failed:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Runs `kubectl ARGS` with `stdin`.
pub async fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    run("kubectl", args, stdin).await
}

/// The number of objects in rendered manifests (documents with a top-level `kind`).
pub fn count_objects(manifests: &str) -> usize {
    manifests
        .lines()
        .filter(|l| l.starts_with("kind: "))
        .count()
}

/// Copies a folder recursively (a chart to modify in a test).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// A fresh temporary folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(crate::unique(prefix));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Applies (server-side) a CRD given as JSON and waits until it is served.
pub async fn apply_crd(client: &Client, crd: Value) {
    let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("a CRD");
    let name = crd.metadata.name.clone().expect("CRD name");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("e2e-chart").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    wait_for(&api, &name, TIMEOUT, conditions::is_crd_established()).await;
}

/// A minimal stand-in for the Prometheus Operator's ServiceMonitor CRD (any content accepted), so that the chart's
/// ServiceMonitors can be validated by the API server of a cluster without the Prometheus Operator.
pub async fn install_service_monitor_crd(client: &Client) {
    apply_crd(
        client,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList",
                          "plural": "servicemonitors", "singular": "servicemonitor"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        }),
    )
    .await;
}

/// One question to the authorizer: may the subject do `verb` on `group/resource[/subresource]` (named `name`) in
/// `namespace` (`None`: cluster-scoped resources, or namespaced ones across every namespace)?
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    pub namespace: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub name: Option<String>,
    pub verb: String,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(s) = &self.subresource {
            write!(f, "/{s}")?;
        }
        if let Some(n) = &self.name {
            write!(f, " named {n}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in {ns}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

/// Asks the API server (SubjectAccessReview) whether ServiceAccount `sa` of namespace `sa_ns` may do `access`, with
/// the groups a ServiceAccount token carries.
pub async fn may(client: &Client, sa_ns: &str, sa: &str, access: &Access) -> bool {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{sa_ns}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: access.namespace.clone(),
                group: Some(access.group.clone()),
                resource: Some(access.resource.clone()),
                subresource: access.subresource.clone(),
                name: access.name.clone(),
                verb: Some(access.verb.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview for {sa} ({access}): {e}"));
    answer.status.is_some_and(|s| s.allowed)
}

/// Runs `body`, then `cleanup` whether `body` panicked or not, then re-raises the panic: for objects outside the test
/// namespace (cluster-scoped RBAC of a release, CRDs) that deleting the namespace does not remove.
pub async fn finally<B, C>(body: B, cleanup: C)
where
    B: std::future::Future<Output = ()>,
    C: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Uninstalls a release, ignoring errors (cleanup after a failed test).
pub async fn uninstall_quietly(ns: &str, release: &str) {
    let _ = helm(&["uninstall", release, "-n", ns, "--ignore-not-found"]).await;
}
