//! Scenario tests of the job reconcile against a mocked API server (tower-test): what it asks the server, and what
//! it does with the answers (a Pod refused with 422, a Pod that already exists, a status write that conflicts).

use serde_json::Value;

use super::*;
use crate::controller::fake_api::{context, requests, status, with_status};
use crate::domain::fixtures::yaml;
use crate::retry::Class;

fn job() -> AgentJob {
    yaml(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata:
  name: j1
  namespace: ns
  uid: u-j1
  resourceVersion: "1"
  generation: 1
  creationTimestamp: "2026-01-01T00:00:00Z"
  labels: {agentorchestrator.dev/tree: s1}
  ownerReferences: [{apiVersion: agentorchestrator.dev/v1alpha1, kind: AgentSession, name: s1, uid: u-s1}]
spec: {type: Start, sessionName: s1, prompt: "do it"}
"#,
    )
}

fn session() -> AgentSession {
    yaml(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {name: s1, namespace: ns, uid: u-s1, resourceVersion: "1", labels: {agentorchestrator.dev/tree: s1}, annotations: {agentorchestrator.dev/created-by-job: u-j1}}
spec: {}
"#,
    )
}

fn scenario(
    answer: crate::controller::fake_api::Answer,
) -> (Arc<Context>, crate::controller::fake_api::Seen) {
    context(answer, vec![job()], vec![session()])
}

fn written_job(body: &Value) -> (u16, Value) {
    with_status(job(), body)
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
