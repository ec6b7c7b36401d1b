//! Scenario tests of the job reconcile against a mocked API server (tower-test): what it asks the server, and what
//! it does with the answers (a Pod refused with 422, a Pod that already exists, a status write that conflicts).

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::reflector::store;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;
use crate::controller::index::{JobIndex, record};
use crate::domain::fixtures::yaml;
use crate::domain::pod::PodDefaults;
use crate::metrics::Metrics;
use crate::retry::Class;

/// One request the reconcile made: method, path and JSON body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// How the fake API server answers a request (method, path, body): status code and JSON body.
type Answer = fn(&str, &str, &Value) -> (u16, Value);

fn job() -> AgentJob {
    yaml(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {name: j1, namespace: ns, uid: u-j1, resourceVersion: "1", generation: 1, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {type: Start, sessionName: s1, prompt: "do it"}
"#,
    )
}

fn session() -> AgentSession {
    yaml(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {name: s1, namespace: ns, uid: u-s1, resourceVersion: "1", annotations: {agentorchestrator.dev/created-by-job: u-j1}}
spec: {}
"#,
    )
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}),
    )
}

/// The job as the server would return it after a status write with `body`.
fn written_job(body: &Value) -> (u16, Value) {
    let mut written = serde_json::to_value(job()).unwrap();
    written["status"] = body["status"].clone();
    written["metadata"]["resourceVersion"] = json!("2");
    (200, written)
}

/// Events are for people; the recorder's writes are answered and otherwise ignored.
fn event(method: &str, path: &str, body: &Value) -> Option<(u16, Value)> {
    path.contains("/events")
        .then(|| (if method == "POST" { 201 } else { 200 }, body.clone()))
}

/// A context whose client talks to a fake API server answering with `answer`, and whose stores hold the job and
/// its session. Returns the context and the requests seen.
fn scenario(answer: Answer) -> (Arc<Context>, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, reply) = event(&method, &path, &body).unwrap_or_else(|| {
                log.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), body.clone()));
                answer(&method, &path, &body)
            });
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
    });
    let client = kube::Client::new(service, "ns");
    let (jobs, mut job_writer) = store::<AgentJob>();
    let (sessions, mut session_writer) = store::<AgentSession>();
    let (pods, _) = store::<Pod>();
    let (blueprints, _) = store::<AgentBlueprint>();
    let index = Arc::new(JobIndex::default());
    record(&index, &mut job_writer, &Event::Apply(job()));
    session_writer.apply_watcher_event(&Event::Apply(session()));
    let defaults = PodDefaults {
        image: "runner:test".into(),
        mcp_url: "http://gateway/mcp".into(),
    };
    let ctx = Context::new(
        client,
        defaults,
        (jobs, sessions, pods, blueprints),
        index,
        Metrics::default(),
    );
    (Arc::new(ctx), seen)
}

fn requests(seen: &Seen, method: &str, path_end: &str) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m == method && p.ends_with(path_end))
        .map(|(_, _, b)| b.clone())
        .collect()
}

const PODS: &str = "/api/v1/namespaces/ns/pods";
const JOB_STATUS: &str = "/agentjobs/j1/status";

#[tokio::test]
async fn a_pod_refused_with_422_fails_the_job_with_the_servers_message() {
    let (ctx, seen) = scenario(|method, path, body| match (method, path) {
        ("POST", PODS) => status(
            422,
            "Invalid",
            "Pod \"j1\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes",
        ),
        ("PATCH", p) if p.ends_with(JOB_STATUS) => written_job(body),
        _ => status(404, "NotFound", "not here"),
    });
    let action = reconcile(Arc::new(job()), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(
        requests(&seen, "POST", PODS).len(),
        1,
        "asked once, not retried"
    );
    let writes = requests(&seen, "PATCH", JOB_STATUS);
    assert_eq!(writes.len(), 1, "{writes:?}");
    let status = &writes[0]["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "PodRejected");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("metadata.annotations: Too long"), "{error}");
    assert_eq!(
        writes[0]["metadata"]["resourceVersion"], "1",
        "written with the resourceVersion it was decided from"
    );
}

#[tokio::test]
async fn a_pod_that_already_exists_is_taken_as_created() {
    let (ctx, seen) = scenario(|method, path, _| match (method, path) {
        ("POST", PODS) => status(409, "AlreadyExists", "pods \"j1\" already exists"),
        _ => status(404, "NotFound", "not here"),
    });
    let action = reconcile(Arc::new(job()), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(requests(&seen, "POST", PODS).len(), 1);
    assert!(
        requests(&seen, "PATCH", JOB_STATUS).is_empty(),
        "no status until the Pod has one"
    );
    assert!(ctx.freshness.expects_pod(Some("u-j1")), "waits for its Pod");
}

#[tokio::test]
async fn a_status_write_that_conflicts_is_retried_not_taken_as_a_failure() {
    let (ctx, seen) = scenario(|method, path, _| match (method, path) {
        ("POST", PODS) => status(403, "Forbidden", "pods \"j1\" is forbidden: no account"),
        ("PATCH", p) if p.ends_with(JOB_STATUS) => {
            status(409, "Conflict", "the object has been modified")
        }
        _ => status(404, "NotFound", "not here"),
    });
    let err = reconcile(Arc::new(job()), ctx.clone()).await.unwrap_err();
    assert_eq!(err.class(), Class::Conflict, "{err}");
    assert!(!err.is_permanent());
    assert_eq!(requests(&seen, "PATCH", JOB_STATUS).len(), 1);
}
