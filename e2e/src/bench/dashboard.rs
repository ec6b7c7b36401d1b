//! The dashboard with a big namespace: `SESSIONS` AgentSessions with status (100 roots, 9 children each), made
//! directly with server-side apply, rendered by the gateway's /ui/ in headless chromium (e2e::browser). Measured in
//! the browser: from navigation, and from the snapshot's arrival, to the whole tree on the page; and a filter's
//! re-render. e2e/tests/dashboard.rs runs the same and prints the figures; `make bench` holds them to the target.

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::browser::Browser;

pub const SESSIONS: usize = 1000;
/// Page loads measured by the benchmark (the median is reported).
pub const ROUNDS: usize = 3;

/// What one page load of the big namespace took, in the browser.
#[derive(Clone, Debug, Default)]
pub struct Render {
    /// From navigation to the whole tree in the page (page load, sign-in check, stream, rows built).
    pub since_navigation_ms: f64,
    /// From navigation to the first frame painted after that (layout and paint of the rows included).
    pub painted_ms: f64,
    /// From the snapshot's arrival to the whole tree on the page.
    pub snapshot_to_render_ms: f64,
    /// A phase filter: from the input to the next frame after the table shows its result.
    pub filter_ms: f64,
    pub filtered_rows: u64,
}

/// `n` AgentSessions with status: roots `root-I` and their children `root-I-J`; every seventh Failed, the rest
/// Idle. Server-side apply, `crate::bench::CREATE_PARALLELISM` at a time.
pub async fn create_sessions(client: &Client, ns: &str, n: usize) {
    let api: Api<crds::AgentSession> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply("e2e-dashboard").force();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, params) = (api.clone(), params.clone());
            async move {
                let root = i / 10;
                let (name, parent) = if i % 10 == 0 {
                    (format!("root-{root}"), None)
                } else {
                    (
                        format!("root-{root}-{}", i % 10),
                        Some(format!("root-{root}")),
                    )
                };
                let object = json!({
                    "apiVersion": "agentorchestrator.dev/v1alpha1",
                    "kind": "AgentSession",
                    "metadata": {"name": name},
                    "spec": {"blueprint": "demo", "parentSessionName": parent},
                });
                api.patch(&name, &params, &Patch::Apply(&object))
                    .await
                    .unwrap_or_else(|e| panic!("apply session {name}: {e}"));
                let phase = if i % 7 == 0 { "Failed" } else { "Idle" };
                let status = json!({
                    "apiVersion": "agentorchestrator.dev/v1alpha1",
                    "kind": "AgentSession",
                    "status": {"phase": phase, "jobCount": 1, "parentSessionName": parent,
                               "result": format!("result of {name}")},
                });
                api.patch_status(&name, &params, &Patch::Apply(&status))
                    .await
                    .unwrap_or_else(|e| panic!("apply status of {name}: {e}"));
            }
        })
        .buffer_unordered(crate::bench::CREATE_PARALLELISM)
        .collect::<Vec<()>>()
        .await;
}

/// Loads `url` (the tree of a namespace of `rows` sessions) and measures it.
pub async fn measure(browser: &mut Browser, url: &str, rows: usize) -> Render {
    browser.goto(url).await;
    browser
        .wait_until(
            &format!("document.querySelectorAll('#tree tbody tr').length === {rows}"),
            60_000,
        )
        .await;
    browser
        .wait_until("window.dashboard.firstPaintAt > 0", 60_000)
        .await;
    let first = browser
        .eval(
            "({ nav: window.dashboard.firstFullRenderAt, painted: window.dashboard.firstPaintAt, \
             snap: window.dashboard.snapshotToRenderMs })",
        )
        .await;
    let filtered = browser
        .eval(
            "new Promise((done) => { const t0 = performance.now(); const f = document.getElementById('filter-phase'); \
             f.value = 'Failed'; f.dispatchEvent(new Event('input')); \
             requestAnimationFrame(() => requestAnimationFrame(() => done({ ms: performance.now() - t0, \
             rows: document.querySelectorAll('#tree tbody tr:not([hidden])').length }))); })",
        )
        .await;
    Render {
        since_navigation_ms: first["nav"].as_f64().unwrap_or_default(),
        painted_ms: first["painted"].as_f64().unwrap_or_default(),
        snapshot_to_render_ms: first["snap"].as_f64().unwrap_or_default(),
        filter_ms: filtered["ms"].as_f64().unwrap_or_default(),
        filtered_rows: filtered["rows"].as_u64().unwrap_or_default(),
    }
}

/// The benchmark: a fresh namespace of SESSIONS sessions, a gateway (header mode), ROUNDS page loads.
pub async fn render(client: &Client) -> Vec<Render> {
    let ns = "bench-dashboard";
    crate::bench::fresh_namespace(client, ns).await;
    create_sessions(client, ns, SESSIONS).await;
    let gateway = crate::gateway::Gateway::start(&["--auth=header"]).await;
    let mut browser = Browser::start().await;
    let url = format!("http://{}/ui/#/ns/{ns}", gateway.addr);
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        // A fresh page each round: about:blank first, so the next load is a navigation, not a hash change.
        browser.goto("about:blank").await;
        rounds.push(measure(&mut browser, &url, SESSIONS).await);
    }
    rounds
}
