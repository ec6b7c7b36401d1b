//! A mocked API server for scenario tests of the reconcilers (tower-test): it answers each request with a test's
//! function and records what was asked, so a test states which writes a reconcile makes, in which order.

use std::sync::{Arc, Mutex};

use crds::{AgentBlueprint, AgentJob, AgentSession};
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::reflector::store;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use crate::context::Context;
use crate::controller::index::{JobIndex, record};
use crate::domain::agent_pod::AgentPod;
use crate::domain::pod::PodDefaults;
use crate::metrics::Metrics;

/// The requests a reconcile made (Events left out): method, path and JSON body, in order.
pub type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// How the server answers a request (method, path, body): status code and JSON body.
pub type Answer = fn(&str, &str, &Value) -> (u16, Value);

/// A refusal, as the API server words it.
pub fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}),
    )
}

/// `object` as the server returns it after a status write with `body`.
pub fn with_status(object: impl serde::Serialize, body: &Value) -> (u16, Value) {
    let mut written = serde_json::to_value(object).unwrap();
    written["status"] = body["status"].clone();
    written["metadata"]["resourceVersion"] = json!("2");
    (200, written)
}

/// A context whose client talks to the fake server, with `jobs` and `sessions` in its stores.
pub fn context(
    answer: Answer,
    jobs: Vec<AgentJob>,
    sessions: Vec<AgentSession>,
) -> (Arc<Context>, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            // Events are for people: answered, not recorded.
            let (code, reply) = if path.contains("/events") {
                (if method == "POST" { 201 } else { 200 }, body)
            } else {
                log.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), body.clone()));
                answer(&method, &path, &body)
            };
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
    });
    let (job_store, mut job_writer) = store::<AgentJob>();
    let (session_store, mut session_writer) = store::<AgentSession>();
    let (pods, _) = store::<AgentPod>();
    let (blueprints, _) = store::<AgentBlueprint>();
    let index = Arc::new(JobIndex::default());
    for job in jobs {
        record(&index, &mut job_writer, &Event::Apply(job));
    }
    for session in sessions {
        session_writer.apply_watcher_event(&Event::Apply(session));
    }
    let defaults = PodDefaults {
        image: "runner:test".into(),
        mcp_url: "http://gateway/mcp".into(),
        otlp_endpoint: None,
    };
    let ctx = Context::new(
        kube::Client::new(service, "ns"),
        defaults,
        (job_store, session_store, pods, blueprints),
        index,
        Metrics::default(),
    );
    (Arc::new(ctx), seen)
}

/// The bodies of the requests with `method` whose path ends with `path_end`.
pub fn requests(seen: &Seen, method: &str, path_end: &str) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m == method && p.ends_with(path_end))
        .map(|(_, _, b)| b.clone())
        .collect()
}

/// Method and path of every request, in order.
pub fn calls(seen: &Seen) -> Vec<(String, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect()
}
