//! Starting and talking to the MCP gateway in end-to-end tests: the gateway runs as a real process
//! (`MCP_GATEWAY_BIN`, default `target/debug/mcp-gateway`), the MCP client is the official MCP Python SDK
//! (`e2e/python/mcp_client.py` run by `.local/venv/bin/python`), and plain HTTP (result API, probes, metrics) goes
//! through a minimal HTTP/1.1 client on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::{eventually, kubeconfig_path, unique, workspace_root};

/// Audience of agent tokens.
pub const AUDIENCE: &str = crds::contract::GATEWAY_TOKEN_AUDIENCE;
/// Pod labels the gateway reads.
pub const SESSION_LABEL: &str = crds::labels::SESSION;
pub const JOB_LABEL: &str = crds::labels::JOB;
pub const MANAGED_BY: &str = crds::labels::MANAGED_BY;
pub const MANAGER: &str = crds::labels::MANAGER;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A gateway process, killed when dropped. Its log is printed when the test fails.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    /// Starts the gateway on a free loopback port with `args` (e.g. `--auth=header`, `--namespace=...`) and
    /// returns once /readyz says its caches are synced. The CRDs must be installed (see `install_crds`).
    pub async fn start(args: &[&str]) -> Gateway {
        Self::start_with_env(args, &[]).await
    }

    /// As `start`, with extra environment (e.g. the OTEL_* variables of a test of tracing).
    pub async fn start_with_env(args: &[&str], env: &[(String, String)]) -> Gateway {
        let bin = std::env::var_os("MCP_GATEWAY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/debug/mcp-gateway"));
        assert!(
            bin.exists(),
            "no gateway binary at {}: run `cargo build --bins` (or set MCP_GATEWAY_BIN)",
            bin.display()
        );
        let log = std::env::temp_dir().join(format!("{}.log", unique("mcp-gateway")));
        let log_file = std::fs::File::create(&log).expect("gateway log file");
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            .env("RUST_LOG", "info,mcp_gateway=debug")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await.expect("gateway stdout") {
                if let Some(addr) = line.strip_prefix("mcp-gateway listening on ") {
                    return addr.parse::<SocketAddr>().expect("listen address");
                }
            }
            panic!(
                "the gateway exited before listening; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .await
        .unwrap_or_else(|_| panic!("the gateway did not listen within {START_TIMEOUT:?}"));
        let gateway = Gateway { child, addr, log };
        // Readiness is a probe, not an event: ask until the caches are synced.
        eventually("gateway /readyz", START_TIMEOUT, || async {
            (http(gateway.addr, "GET", "/readyz", &[], b"").await.0 == 200).then_some(())
        })
        .await;
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one Prometheus sample (by its exact name and labels). Panics when /metrics cannot be read or
    /// has no such sample: an absent sample is not a zero (a renamed metric or label would read as one). For
    /// "none yet", see `samples`.
    pub async fn metric(&self, sample: &str) -> f64 {
        let body = self.metrics_text().await;
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in the gateway's /metrics:\n{body}"))
    }

    /// Every sample of the metric `name` (e.g. `mcp_gateway_callers_total`), by label set (`{by="token",...}`,
    /// or "" without labels). Panics when /metrics cannot be read or does not declare the metric, so an empty map
    /// means a metric that exists and has counted nothing yet.
    pub async fn samples(&self, name: &str) -> BTreeMap<String, f64> {
        let body = self.metrics_text().await;
        parse_samples(&body, name)
            .unwrap_or_else(|| panic!("the gateway's /metrics declares no {name}:\n{body}"))
    }

    async fn metrics_text(&self) -> String {
        let (code, body) = http(self.addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(code, 200, "the gateway's /metrics: {body}");
        body
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- mcp-gateway log ({}) -----\n{}",
                self.addr,
                self.logs()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The samples of metric `name` in Prometheus or OpenMetrics text, by label set; `None` when the text does not
/// declare it (its `# TYPE` line, which OpenMetrics writes without a counter's `_total`).
pub fn parse_samples(text: &str, name: &str) -> Option<BTreeMap<String, f64>> {
    let family = name.strip_suffix("_total").unwrap_or(name);
    let declared = text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|l| l.split_whitespace().next())
            .is_some_and(|n| n == name || n == family)
    });
    if !declared {
        return None;
    }
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            let labels = labels.trim();
            (labels.is_empty() || labels.starts_with('{')).then_some(())?;
            let value = value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("unreadable sample: {l}"));
            Some((labels.to_string(), value))
        })
        .collect();
    Some(samples)
}

/// Installs the CRDs (idempotent) and waits until the API serves them.
pub async fn install_crds(client: &Client) {
    crate::agents::install_crds(client).await;
}

/// The API resource of one of the project's kinds.
pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "agentorchestrator.dev",
        "v1alpha1",
        kind,
    ))
}

pub fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// Creates an object of one of the project's kinds from its JSON.
pub async fn create(client: &Client, ns: &str, kind: &str, object: Value) -> DynamicObject {
    let mut object = object;
    object["apiVersion"] = json!("agentorchestrator.dev/v1alpha1");
    object["kind"] = json!(kind);
    let obj: DynamicObject = serde_json::from_value(object).expect("valid object");
    api(client, ns, kind)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"))
}

/// Names of the AgentJobs in `ns`, sorted.
pub async fn job_names(client: &Client, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = api(client, ns, "AgentJob")
        .list(&Default::default())
        .await
        .expect("list AgentJobs")
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

/// Waits, by watching, for the first AgentJob of `session` in `ns` and returns it.
pub async fn wait_for_job_of(
    client: &Client,
    ns: &str,
    session: &str,
    timeout: Duration,
) -> DynamicObject {
    let jobs = api(client, ns, "AgentJob");
    let config = watcher::Config::default().labels(&format!("{SESSION_LABEL}={session}"));
    let stream = watcher(jobs, config).applied_objects();
    tokio::time::timeout(timeout, async move {
        let mut stream = std::pin::pin!(stream);
        stream
            .try_next()
            .await
            .expect("watch AgentJobs")
            .expect("watch ended")
    })
    .await
    .unwrap_or_else(|_| panic!("no AgentJob for session {session} within {timeout:?}"))
}

/// A Pod that looks like the operator's agent Pod for `session` (and `job`): the labels the gateway maps a token
/// to. kwok runs it until told otherwise.
pub async fn agent_pod(
    client: &Client,
    ns: &str,
    name: &str,
    session: &str,
    job: Option<&str>,
) -> Pod {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (SESSION_LABEL.to_string(), session.to_string()),
    ]);
    if let Some(job) = job {
        labels.insert(JOB_LABEL.to_string(), job.to_string());
    }
    plain_pod(client, ns, name, labels).await
}

pub async fn plain_pod(
    client: &Client,
    ns: &str,
    name: &str,
    labels: BTreeMap<String, String>,
) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "agent", "image": "registry.invalid/agent:1"}], "restartPolicy": "Never"}
    }))
    .expect("valid Pod");
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create Pod {name}: {e}"))
}

/// A ServiceAccount token bound to `pod`, for `audience` (the projected token of an agent Pod, as TokenRequest),
/// valid for 10 minutes.
pub async fn pod_token(client: &Client, pod: &Pod, audience: &str) -> String {
    crate::procnode::volumes::bound_token(client, pod, Some(audience.into()), Some(600))
        .await
        .unwrap_or_else(|e| panic!("TokenRequest: {e:#}"))
}

/// Ends a job as an operator would. Without an operator the test plays it: the status is written with
/// server-side apply on the status subresource (field manager `e2e-simulated-operator`). When an operator did
/// pick the job up (it has a Pod), its Pod is told to finish instead, so both worlds end the same way.
pub async fn finish_job(client: &Client, ns: &str, job: &str, succeed: bool) {
    let jobs = api(client, ns, "AgentJob");
    let current = jobs.get(job).await.expect("get AgentJob");
    let pod = current.data["status"]["podName"]
        .as_str()
        .map(str::to_string);
    if let Some(pod) = pod {
        let outcome = if succeed { "succeed" } else { "fail" };
        Api::<Pod>::namespaced(client.clone(), ns)
            .patch(
                &pod,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"sim.agentorchestrator.dev/outcome": outcome}}})),
            )
            .await
            .expect("annotate the job's Pod");
    } else {
        let (phase, reason) = if succeed {
            ("Succeeded", "Completed")
        } else {
            ("Failed", "PodFailed")
        };
        let patch = json!({
            "apiVersion": "agentorchestrator.dev/v1alpha1",
            "kind": "AgentJob",
            "status": {"phase": phase, "reason": reason},
        });
        jobs.patch_status(
            job,
            &PatchParams::apply("e2e-simulated-operator").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("write the job's status");
    }
}

/// One step of an MCP client plan.
pub fn list_tools() -> Value {
    json!({"op": "list_tools"})
}

pub fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

/// An MCP client session (the official Python SDK): where to connect, with which headers and how.
#[derive(Clone, Debug, Default)]
pub struct McpClient {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// "auto" (the SDK's default negotiation) or "legacy" (initialize handshake).
    pub mode: Option<String>,
    /// One TCP connection per HTTP request, as behind a per-connection load balancer.
    pub fresh_connections: bool,
}

/// What one client session did: `Ok(results)` (one per step) or `Err(why the session failed)`.
pub type McpOutcome = Result<Vec<Value>, String>;

impl McpClient {
    pub fn new(url: String) -> Self {
        McpClient {
            url,
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_string(), value.to_string());
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// Runs one client session through `steps` (see e2e/python/mcp_client.py).
    pub async fn run(&self, steps: Vec<Value>) -> McpOutcome {
        self.run_with_timeout(steps, Duration::from_secs(120)).await
    }

    pub async fn run_with_timeout(&self, steps: Vec<Value>, timeout: Duration) -> McpOutcome {
        let python = workspace_root().join(".local/venv/bin/python");
        assert!(
            python.exists(),
            "no {}: run `make python-env`",
            python.display()
        );
        let plan = json!({
            "url": self.url,
            "headers": self.headers,
            "mode": self.mode.clone().unwrap_or_else(|| "auto".into()),
            "fresh_connections": self.fresh_connections,
            "steps": steps,
        });
        let mut child = Command::new(python)
            .arg(workspace_root().join("e2e/python/mcp_client.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the MCP Python client");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(plan.to_string().as_bytes())
            .await
            .expect("write plan");
        drop(stdin);
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("the MCP client did not finish within {timeout:?}"))
            .expect("MCP client output");
        let parsed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "MCP client printed no JSON ({e}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if parsed["ok"] == true {
            Ok(parsed["results"].as_array().cloned().unwrap_or_default())
        } else {
            Err(parsed["error"].as_str().unwrap_or_default().to_string())
        }
    }
}

/// The text of a successful tool result; panics (with the result) otherwise.
pub fn ok_text(result: &Value) -> String {
    assert_eq!(
        result["is_error"], false,
        "expected a successful tool result, got {result}"
    );
    result["text"].as_str().expect("text").to_string()
}

/// The text of a tool error; panics (with the result) otherwise.
pub fn error_text(result: &Value) -> String {
    assert_eq!(
        result["is_error"], true,
        "expected a tool error, got {result}"
    );
    result["text"].as_str().expect("text").to_string()
}

/// A minimal HTTP/1.1 request on loopback (Connection: close). Returns the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    // A server may answer (413) before reading a large body and close: a failed write is not an error then.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    )
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        // A malformed size is a broken response, not the end of the body.
        let n = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|_| panic!("malformed chunk size {size:?} in an HTTP response"));
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// A loopback TCP proxy that sends each new connection to the next backend in turn, like a Service does.
pub struct RoundRobinProxy {
    pub addr: SocketAddr,
    /// Connections forwarded to each backend.
    pub served: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobinProxy {
    pub async fn start(backends: Vec<SocketAddr>) -> RoundRobinProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let counts = served.clone();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let i = next % backends.len();
                next += 1;
                counts[i].fetch_add(1, Ordering::Relaxed);
                let backend = backends[i];
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        RoundRobinProxy { addr, served, task }
    }

    pub fn counts(&self) -> Vec<usize> {
        self.served
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for RoundRobinProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits, by watching, until the object `name` of one of the project's kinds satisfies `condition`.
pub async fn wait_for_object(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    timeout: Duration,
    condition: impl Fn(&DynamicObject) -> bool + Send + 'static,
) -> DynamicObject {
    let objects = api(client, ns, kind);
    let cond = move |o: Option<&DynamicObject>| o.is_some_and(&condition);
    match tokio::time::timeout(
        timeout,
        kube::runtime::wait::await_condition(objects.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{kind} {name} vanished"),
        Ok(Err(e)) => panic!("watching {kind} {name}: {e}"),
        Err(_) => panic!(
            "timed out after {timeout:?} waiting for {kind} {name}; last seen: {:#?}",
            objects.get_opt(name).await.ok().flatten()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_a_declared_metric_by_label_set() {
        let text = "# HELP mcp_gateway_callers MCP requests accepted.\n# TYPE mcp_gateway_callers counter\n\
                    mcp_gateway_callers_total{by=\"token\",header=\"present\"} 3\n\
                    mcp_gateway_callers_total_extra 9\n\
                    # TYPE mcp_gateway_auth_refusals counter\n# EOF\n";
        let callers = parse_samples(text, "mcp_gateway_callers_total").unwrap();
        assert_eq!(
            callers,
            BTreeMap::from([("{by=\"token\",header=\"present\"}".to_string(), 3.0)])
        );
        assert_eq!(
            parse_samples(text, "mcp_gateway_auth_refusals_total"),
            Some(BTreeMap::new()),
            "declared, nothing counted yet"
        );
        assert_eq!(parse_samples(text, "mcp_gateway_callers_count"), None);
    }
}
