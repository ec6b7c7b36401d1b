//! Scenario tests of callback delivery, run by the parent's session reconcile against a mocked API server: the
//! writes happen in the order the exactly-once argument of `callbacks` needs (queued, marked, delivery job created,
//! queue emptied), and a reconcile replayed after a crash continues the sequence instead of repeating it.

use std::sync::Arc;

use crds::{AgentJob, AgentSession};
use serde_json::{Value, json};

use super::fake_api::{Answer, Seen, calls, context, requests, status, with_status};
use super::session::reconcile;
use crate::domain::callback::rules::delivery_job_name;
use crate::domain::fixtures::yaml;

fn parent(queue: &str) -> AgentSession {
    yaml(&format!(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {{name: boss, namespace: ns, uid: u-boss, resourceVersion: "1", labels: {{agentorchestrator.dev/tree: boss}}}}
spec: {{}}
status: {{phase: Idle, depth: 0, jobCount: 1, lastJob: boss, callbackQueue: {queue}}}
"#
    ))
}

/// Child c1 of boss (bound by the gateway's annotation), ended with result 42, its callback in `state`.
fn child(state: &str) -> AgentJob {
    yaml(&format!(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {{name: c1, namespace: ns, uid: u-c1, resourceVersion: "1", annotations: {{agentorchestrator.dev/parent-uid: u-boss}}}}
spec: {{type: Start, sessionName: w1, prompt: p, parentSessionName: boss, callback: true}}
status: {{phase: Succeeded, result: "42", completionTime: "2026-01-01T00:00:05Z", callback: {{state: {state}, parentUid: u-boss}}}}
"#
    ))
}

const QUEUED: &str = r#"[{childSession: w1, childJob: c1, childJobUid: u-c1, outcome: Succeeded, result: "42", enqueueTime: "2026-01-01T00:00:06Z"}]"#;

const PARENT_STATUS: &str = "/agentsessions/boss/status";
const CHILD_STATUS: &str = "/agentjobs/c1/status";
const JOBS: &str = "/namespaces/ns/agentjobs";

fn answer(method: &str, path: &str, body: &Value) -> (u16, Value) {
    match method {
        "GET" if path.ends_with("/agentjobs/c1") => {
            (200, serde_json::to_value(child("Pending")).unwrap())
        }
        "PATCH" if path.ends_with(PARENT_STATUS) => with_status(parent("[]"), body),
        "PATCH" if path.ends_with(CHILD_STATUS) => with_status(child("Pending"), body),
        "POST" if path.ends_with(JOBS) => {
            let mut created = body.clone();
            created["metadata"]["uid"] = json!("u-delivery");
            created["metadata"]["resourceVersion"] = json!("1");
            (201, created)
        }
        _ => status(404, "NotFound", "not here"),
    }
}

async fn run(answer: Answer, parent: AgentSession, jobs: Vec<AgentJob>) -> Seen {
    let (ctx, seen) = context(answer, jobs, vec![parent.clone()]);
    reconcile(Arc::new(parent), ctx).await.unwrap();
    seen
}

fn kinds(seen: &Seen) -> Vec<String> {
    calls(seen)
        .into_iter()
        .map(|(m, p)| {
            let what = [PARENT_STATUS, CHILD_STATUS, JOBS, "/agentjobs/c1"]
                .into_iter()
                .find(|end| p.ends_with(end))
                .unwrap_or(p.as_str());
            format!("{m} {what}")
        })
        .collect()
}

/// The delivery job of c1 as the reconcile before this one made it.
fn made_delivery() -> AgentJob {
    let name = delivery_job_name("boss", "u-c1");
    yaml(&format!(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata:
  name: {name}
  namespace: ns
  uid: u-delivery
  creationTimestamp: "2026-01-01T00:00:07Z"
  labels: {{agentorchestrator.dev/callback-delivery: "true", agentorchestrator.dev/session: boss}}
  annotations: {{agentorchestrator.dev/delivers: u-c1, agentorchestrator.dev/delivers-jobs: c1}}
spec: {{type: Resume, sessionName: boss, prompt: "the child's result"}}
"#
    ))
}

/// Asserts that the parent's status write `seen` made (the `nth`) emptied the queue; returns that status.
fn emptied(seen: &Seen, nth: usize) -> Value {
    let emptied = requests(seen, "PATCH", PARENT_STATUS)[nth]["status"].clone();
    assert!(
        emptied["callbackQueue"]
            .as_array()
            .is_none_or(|q| q.is_empty()),
        "{emptied}"
    );
    emptied
}

/// The calls grouped into the steps of `controller::session::write`: the marks `Enqueued` and the delivery job's
/// create go out together, so their order within a step is not fixed (sorted here); every other call is a step of
/// its own.
fn in_steps(seen: &Seen) -> Vec<Vec<String>> {
    let together =
        |k: &str| k == "PATCH /agentjobs/c1/status" || k == "POST /namespaces/ns/agentjobs";
    let mut steps: Vec<Vec<String>> = Vec::new();
    for k in kinds(seen) {
        match steps.last_mut() {
            Some(step)
                if together(&k) && step.iter().all(|s| together(s)) && !step.contains(&k) =>
            {
                step.push(k);
                step.sort();
            }
            _ => steps.push(vec![k]),
        }
    }
    steps
}

#[tokio::test]
async fn an_ended_child_is_queued_marked_and_delivered_in_that_order() {
    let seen = run(answer, parent("[]"), vec![child("Pending")]).await;
    assert_eq!(
        in_steps(&seen),
        [
            vec!["GET /agentjobs/c1"], // fresh read: the cache may miss a mark
            vec!["PATCH /agentsessions/boss/status"],
            vec![
                "PATCH /agentjobs/c1/status",
                "POST /namespaces/ns/agentjobs"
            ],
            vec!["PATCH /agentsessions/boss/status"],
        ]
    );
    let parent_writes = requests(&seen, "PATCH", PARENT_STATUS);
    let queued = &parent_writes[0]["status"]["callbackQueue"];
    assert_eq!(queued.as_array().unwrap().len(), 1);
    assert_eq!(queued[0]["childJobUid"], "u-c1");
    assert_eq!(
        requests(&seen, "PATCH", CHILD_STATUS)[0]["status"]["callback"]["state"],
        "Enqueued"
    );
    let delivery = &requests(&seen, "POST", JOBS)[0];
    let name = delivery_job_name("boss", "u-c1");
    assert_eq!(delivery["metadata"]["name"], name.as_str());
    assert_eq!(
        delivery["metadata"]["annotations"]["agentorchestrator.dev/delivers"],
        "u-c1"
    );
    assert!(
        delivery["spec"]["prompt"].as_str().unwrap().contains("42"),
        "{delivery}"
    );
    let emptied = emptied(&seen, 1);
    assert_eq!(emptied["currentJob"], name.as_str());
    assert_eq!(
        parent_writes[1]["metadata"]["resourceVersion"], "2",
        "the second write builds on the first"
    );
}

#[tokio::test]
async fn a_reconcile_replayed_after_a_crash_before_the_mark_does_not_queue_twice() {
    // The previous operator appended the entry and died before marking the child.
    let seen = run(answer, parent(QUEUED), vec![child("Pending")]).await;
    assert_eq!(
        in_steps(&seen),
        [
            vec![
                "PATCH /agentjobs/c1/status",
                "POST /namespaces/ns/agentjobs"
            ],
            vec!["PATCH /agentsessions/boss/status"],
        ],
        "no second entry, no read: the queue already holds the child"
    );
    emptied(&seen, 0);
}

#[tokio::test]
async fn a_reconcile_replayed_after_a_crash_after_the_delivery_job_finds_it_and_makes_no_second() {
    // The previous operator created the delivery job and died before emptying the queue.
    let name = delivery_job_name("boss", "u-c1");
    let delivery = made_delivery();
    let seen = run(answer, parent(QUEUED), vec![child("Enqueued"), delivery]).await;
    assert_eq!(
        kinds(&seen),
        [
            "PATCH /agentsessions/boss/status",
            "PATCH /agentjobs/c1/status"
        ],
        "the job is taken as it is: no create"
    );
    let emptied = emptied(&seen, 0);
    assert_eq!(emptied["currentJob"], name.as_str());
    let mark = &requests(&seen, "PATCH", CHILD_STATUS)[0]["status"]["callback"];
    assert_eq!(mark["state"], "Delivered");
    assert_eq!(mark["deliveredBy"], name.as_str());
}

fn busy(queue: &str) -> AgentSession {
    let mut p = parent(queue);
    let status = p.status.as_mut().unwrap();
    status.phase = Some(crds::SessionPhase::Running);
    status.current_job = Some("boss".into());
    p
}

fn answer_busy(method: &str, path: &str, body: &Value) -> (u16, Value) {
    match method {
        "PATCH" if path.ends_with(PARENT_STATUS) => with_status(busy("[]"), body),
        _ => answer(method, path, body),
    }
}

#[tokio::test]
async fn a_busy_parent_is_written_once_for_a_queued_callback() {
    // The status planned from the queue as written differs in memory from the copy the API server returns (times
    // go out in whole seconds); a second apply would change nothing, leave the resourceVersion where it was and make
    // that copy look superseded, so the session would never be reconciled again.
    let running: AgentJob = yaml(
        r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {name: boss, namespace: ns, uid: u-boss-job, resourceVersion: "1"}
spec: {type: Resume, sessionName: boss, prompt: p}
status: {phase: Running}
"#,
    );
    let seen = run(answer_busy, busy("[]"), vec![child("Pending"), running]).await;
    assert_eq!(
        kinds(&seen),
        [
            "GET /agentjobs/c1",
            "PATCH /agentsessions/boss/status",
            "PATCH /agentjobs/c1/status",
        ]
    );
}

/// The delivery job exists already (made by the reconcile before, whose mark of the child failed) but is not in the
/// store yet.
fn answer_made_before(method: &str, path: &str, body: &Value) -> (u16, Value) {
    let name = delivery_job_name("boss", "u-c1");
    match method {
        "POST" if path.ends_with(JOBS) => status(409, "AlreadyExists", "already exists"),
        "GET" if path.ends_with(&format!("/agentjobs/{name}")) => {
            (200, serde_json::to_value(made_delivery()).unwrap())
        }
        _ => answer(method, path, body),
    }
}

#[tokio::test]
async fn a_delivery_job_made_while_the_mark_failed_is_taken_only_after_the_mark() {
    // The mark and the create went out together before; the create landed, the mark did not. The entry is still
    // queued and the child unmarked: it is marked again, the job found by its name, and only then is the entry
    // dropped from the queue (the write that must follow every mark).
    let seen = run(answer_made_before, parent(QUEUED), vec![child("Pending")]).await;
    let name = delivery_job_name("boss", "u-c1");
    let steps = in_steps(&seen);
    let found = format!("GET /apis/agentorchestrator.dev/v1alpha1/namespaces/ns/agentjobs/{name}");
    assert_eq!(
        steps,
        [
            vec![
                "PATCH /agentjobs/c1/status",
                "POST /namespaces/ns/agentjobs"
            ],
            vec![found.as_str()],
            vec!["PATCH /agentsessions/boss/status"],
            vec!["PATCH /agentjobs/c1/status"],
        ],
        "{steps:?}"
    );
    let marks = requests(&seen, "PATCH", CHILD_STATUS);
    assert_eq!(marks[0]["status"]["callback"]["state"], "Enqueued");
    assert_eq!(marks[1]["status"]["callback"]["state"], "Delivered");
    let emptied = emptied(&seen, 0);
    assert_eq!(emptied["currentJob"], name.as_str());
}
