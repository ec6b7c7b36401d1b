//! A job's life against an API server held in memory, for counting what it costs: every write and every Event the
//! operator makes, in order. The server keeps objects (create, get, list, merge patch, server-side apply of status
//! by field manager with the resourceVersion precondition, delete with finalizers); the driver feeds each change
//! to the stores and runs the reconciles the real watches would trigger (the same `triggers`), one at a time,
//! until none is left. The test plays the kubelet (Pod phases) and the person (kubectl apply).
//!
//! The stores here catch up with every write before the next reconcile runs: the counts are those of an operator
//! whose watches never lag, the design's own cost. A lagging store can only add writes refused with Conflict.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crds::{AgentBlueprint, AgentJob, AgentSession};
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, store};
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::index::{JobIndex, SessionIndex, record, record_session};
use super::{job, session, triggers, trim};
use crate::context::Context;
use crate::domain::agent_pod::AgentPod;
use crate::domain::pod::PodDefaults;
use crate::metrics::Metrics;

pub const NS: &str = "ns";

/// One request the operator made: method, resource (`agentjobs/status`, `pods`, `events` ...), object name, the
/// field manager of an apply, and the answer's status code.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub resource: String,
    pub name: String,
    pub manager: Option<String>,
    pub code: u16,
    /// For Events: the reason and the kind of the object it is about.
    pub event: Option<(String, String)>,
}

impl Call {
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
    }

    pub fn is_event(&self) -> bool {
        self.resource == "events"
    }
}

/// A changed object, for the driver to feed to the stores.
enum Change {
    Applied(String, Value),
    Deleted(String, Value),
}

#[derive(Default)]
struct Server {
    /// By resource (`agentjobs`, `agentsessions`, `pods`, `agentblueprints`), then name.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Status as applied by each field manager, in the order of their last apply (the last one wins a field).
    applied: BTreeMap<(String, String), Vec<(String, Value)>>,
    counter: u64,
    changes: Vec<Change>,
    calls: Vec<Call>,
}

fn status_answer(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}),
    )
}

/// RFC 7386 merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Server-side apply, coarsely: objects merge field by field, anything else (lists included) is replaced.
fn overlay(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, v) in a {
                if !v.is_null() {
                    overlay(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ if !applied.is_null() => *target = applied.clone(),
        _ => {}
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

impl Server {
    fn bump(&mut self) -> String {
        self.counter += 1;
        self.counter.to_string()
    }

    fn changed(&mut self, resource: &str, object: Value) {
        self.changes
            .push(Change::Applied(resource.to_string(), object));
    }

    /// Creates an object as a client outside the operator would (kubectl): not counted among the operator's calls.
    fn create(&mut self, resource: &str, mut object: Value) -> (u16, Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if self
            .objects
            .entry(resource.into())
            .or_default()
            .contains_key(&name)
        {
            return status_answer(
                409,
                "AlreadyExists",
                &format!("{resource} \"{name}\" already exists"),
            );
        }
        let uid = format!("uid-{}", self.bump());
        let meta = &mut object["metadata"];
        meta["uid"] = json!(uid);
        meta["namespace"] = json!(NS);
        meta["creationTimestamp"] = json!(now());
        if resource.starts_with("agent") {
            meta["generation"] = json!(1);
            // The status subresource: a create never sets status.
            object.as_object_mut().unwrap().remove("status");
        }
        object["metadata"]["resourceVersion"] = json!(self.bump());
        self.objects
            .get_mut(resource)
            .unwrap()
            .insert(name, object.clone());
        self.changed(resource, object.clone());
        (201, object)
    }

    fn precondition(current: &Value, body: &Value) -> Result<(), (u16, Value)> {
        match body["metadata"]["resourceVersion"].as_str() {
            Some(rv) if Some(rv) != current["metadata"]["resourceVersion"].as_str() => {
                Err(status_answer(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                ))
            }
            _ => Ok(()),
        }
    }

    fn store(&mut self, resource: &str, name: &str, mut object: Value) -> (u16, Value) {
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if object["metadata"]["deletionTimestamp"].is_string() && !finalizers {
            self.objects.get_mut(resource).unwrap().remove(name);
            self.changes
                .push(Change::Deleted(resource.into(), object.clone()));
            return (200, object);
        }
        object["metadata"]["resourceVersion"] = json!(self.bump());
        self.objects
            .get_mut(resource)
            .unwrap()
            .insert(name.into(), object.clone());
        self.changed(resource, object.clone());
        (200, object)
    }

    fn handle(&mut self, method: &str, path: &str, query: &str, body: &Value) -> (u16, Value) {
        let rest = path
            .split(&format!("/namespaces/{NS}/"))
            .nth(1)
            .unwrap_or_default();
        let parts: Vec<&str> = rest.split('/').collect();
        let (resource, name, sub) = (
            parts.first().copied().unwrap_or_default(),
            parts.get(1).copied(),
            parts.get(2).copied(),
        );
        if resource == "events" {
            return (if method == "POST" { 201 } else { 200 }, body.clone());
        }
        let current = name.and_then(|n| self.objects.get(resource)?.get(n).cloned());
        match (method, name, sub, current) {
            ("GET", None, _, _) => {
                let items: Vec<Value> = self
                    .objects
                    .get(resource)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": self.counter.to_string()}, "items": items}),
                )
            }
            ("POST", None, _, _) => self.create(resource, body.clone()),
            (_, Some(n), _, None) => {
                status_answer(404, "NotFound", &format!("{resource} \"{n}\" not found"))
            }
            ("GET", Some(_), _, Some(object)) => (200, object),
            ("PATCH", Some(n), Some("status"), Some(mut object)) => {
                if let Err(refusal) = Self::precondition(&object, body) {
                    return refusal;
                }
                let manager = query_value(query, "fieldManager").unwrap_or_default();
                let key = (resource.to_string(), n.to_string());
                let applied = self.applied.entry(key).or_default();
                applied.retain(|(m, _)| *m != manager);
                applied.push((manager, body["status"].clone()));
                let mut status = json!({});
                for (_, part) in applied.iter() {
                    overlay(&mut status, part);
                }
                object["status"] = status;
                self.store(resource, n, object)
            }
            ("PATCH", Some(n), None, Some(mut object)) => {
                if let Err(refusal) = Self::precondition(&object, body) {
                    return refusal;
                }
                let mut patch = body.clone();
                if let Some(meta) = patch["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                merge_patch(&mut object, &patch);
                self.store(resource, n, object)
            }
            ("DELETE", Some(n), None, Some(mut object)) => {
                object["metadata"]["deletionTimestamp"] = json!(now());
                self.store(resource, n, object)
            }
            _ => status_answer(405, "MethodNotAllowed", "not simulated"),
        }
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(String::from)
}

#[derive(PartialEq)]
enum Work {
    Job(ObjectRef<AgentJob>),
    Session(ObjectRef<AgentSession>),
}

/// Adds a reconcile unless it waits already (the controller merges triggers of one object the same way).
fn enqueue(queue: &mut VecDeque<Work>, work: impl IntoIterator<Item = Work>) {
    for w in work {
        if !queue.contains(&w) {
            queue.push_back(w);
        }
    }
}

/// The operator's stores, its reconciles and the server, run by hand.
pub struct Simulation {
    server: Arc<Mutex<Server>>,
    pub ctx: Arc<Context>,
    jobs: Writer<AgentJob>,
    sessions: Writer<AgentSession>,
    pods: Writer<AgentPod>,
    blueprints: Writer<AgentBlueprint>,
    index: Arc<JobIndex>,
    session_index: Arc<SessionIndex>,
    queue: VecDeque<Work>,
    /// Reconciles that returned an error (each is run again, as the controller's error policy would).
    pub errors: Vec<String>,
}

impl Simulation {
    pub fn new() -> Simulation {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server: Arc<Mutex<Server>> = Arc::default();
        let shared = server.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, reply) = {
                    let mut server = shared.lock().unwrap();
                    let answer = server.handle(&method, &path, &query, &body);
                    let rest = path
                        .split(&format!("/namespaces/{NS}/"))
                        .nth(1)
                        .unwrap_or_default();
                    let parts: Vec<&str> = rest.split('/').collect();
                    let resource = match parts.get(2) {
                        Some(sub) => format!("{}/{sub}", parts[0]),
                        None => parts[0].to_string(),
                    };
                    let event = (resource == "events" && method == "POST").then(|| {
                        (
                            body["reason"].as_str().unwrap_or_default().to_string(),
                            body["regarding"]["kind"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        )
                    });
                    server.calls.push(Call {
                        method: method.clone(),
                        resource,
                        name: parts.get(1).copied().unwrap_or_default().to_string(),
                        manager: query_value(&query, "fieldManager"),
                        code: answer.0,
                        event,
                    });
                    answer
                };
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap();
                respond.send_response(response);
            }
        });
        let (job_store, jobs) = store::<AgentJob>();
        let (session_store, sessions) = store::<AgentSession>();
        let (pod_store, pods) = store::<AgentPod>();
        let (blueprint_store, blueprints) = store::<AgentBlueprint>();
        let index = Arc::new(JobIndex::default());
        let session_index = Arc::new(SessionIndex::default());
        let defaults = PodDefaults {
            image: "runner:test".into(),
            mcp_url: "http://gateway/mcp".into(),
            otlp_endpoint: None,
        };
        let mut ctx = Context::new(
            kube::Client::new(service, NS),
            defaults,
            (job_store, session_store, pod_store, blueprint_store),
            index.clone(),
            Metrics::default(),
        );
        ctx.session_index = session_index.clone();
        Simulation {
            server,
            ctx: Arc::new(ctx),
            jobs,
            sessions,
            pods,
            blueprints,
            index,
            session_index,
            queue: VecDeque::new(),
            errors: Vec::new(),
        }
    }

    /// Creates `object` as a person would (`kubectl apply`).
    pub fn apply<K: serde::Serialize>(&mut self, resource: &str, object: &K) {
        let (code, reply) = self
            .server
            .lock()
            .unwrap()
            .create(resource, serde_json::to_value(object).unwrap());
        assert_eq!(code, 201, "{reply}");
    }

    /// Sets the status of Pod `name` as the kubelet would, with its `phase`, the agent container's state and its
    /// termination `message`.
    pub fn kubelet(&mut self, name: &str, phase: &str, message: &str) {
        let mut server = self.server.lock().unwrap();
        let mut pod = server.objects["pods"][name].clone();
        let at = now();
        let state = match phase {
            "Running" => json!({"running": {"startedAt": at}}),
            "Succeeded" => {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "message": message, "finishedAt": at}})
            }
            "Failed" => {
                json!({"terminated": {"exitCode": 1, "reason": "Error", "message": message, "finishedAt": at}})
            }
            _ => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        pod["status"] = json!({"phase": phase, "startTime": at,
            "containerStatuses": [{"name": "agent", "state": state, "ready": phase == "Running", "restartCount": 0, "image": "runner:test", "imageID": ""}]});
        server.store("pods", name, pod);
    }

    /// The object `name` of `resource` as the server holds it.
    pub fn get<K: serde::de::DeserializeOwned>(&self, resource: &str, name: &str) -> Option<K> {
        let server = self.server.lock().unwrap();
        let object = server.objects.get(resource)?.get(name)?.clone();
        Some(serde_json::from_value(object).unwrap())
    }

    /// Every call the operator made so far (its Events included: `run` returns once they are published).
    pub fn calls(&self) -> Vec<Call> {
        self.server.lock().unwrap().calls.clone()
    }

    /// Forgets the calls made so far (to count one stage of a life alone).
    pub fn forget_calls(&mut self) {
        self.server.lock().unwrap().calls.clear();
    }

    /// Waits until every Event recorded so far is published (by the context's Event task, as in the operator).
    async fn publish_events(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.ctx.unpublished_events() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Events never published"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn feed(&mut self) {
        let changes = std::mem::take(&mut self.server.lock().unwrap().changes);
        for change in changes {
            let (resource, object, deleted) = match change {
                Change::Applied(r, o) => (r, o, false),
                Change::Deleted(r, o) => (r, o, true),
            };
            match resource.as_str() {
                "agentjobs" => {
                    let mut job: AgentJob = serde_json::from_value(object).unwrap();
                    trim::job(&mut job);
                    let event = if deleted {
                        Event::Delete(job.clone())
                    } else {
                        Event::Apply(job.clone())
                    };
                    record(&self.index, &mut self.jobs, &event);
                    let (me, sessions) = triggers::of_job(&job);
                    let store = self.ctx.jobs.clone();
                    let waiting = triggers::waiting_for_start(&job, &self.index, &store);
                    enqueue(&mut self.queue, [Work::Job(me)]);
                    enqueue(&mut self.queue, waiting.into_iter().map(Work::Job));
                    enqueue(&mut self.queue, sessions.into_iter().map(Work::Session));
                }
                "agentsessions" => {
                    let mut s: AgentSession = serde_json::from_value(object).unwrap();
                    trim::session(&mut s);
                    let event = if deleted {
                        Event::Delete(s.clone())
                    } else {
                        Event::Apply(s.clone())
                    };
                    record_session(&self.session_index, &mut self.sessions, &event);
                    let store = self.ctx.jobs.clone();
                    let (me, waiting) = triggers::of_session(&s, &self.index, &store);
                    enqueue(&mut self.queue, [Work::Session(me)]);
                    enqueue(
                        &mut self.queue,
                        triggers::usage_parent(&s).map(Work::Session),
                    );
                    enqueue(&mut self.queue, waiting.into_iter().map(Work::Job));
                }
                "pods" => {
                    let mut pod: AgentPod = serde_json::from_value(object).unwrap();
                    trim::pod(&mut pod);
                    let event = if deleted {
                        Event::Delete(pod.clone())
                    } else {
                        Event::Apply(pod.clone())
                    };
                    self.pods.apply_watcher_event(&event);
                    let (job, session) = triggers::of_pod(&pod);
                    enqueue(&mut self.queue, job.map(Work::Job));
                    enqueue(&mut self.queue, session.map(Work::Session));
                }
                "agentblueprints" => {
                    let b: AgentBlueprint = serde_json::from_value(object).unwrap();
                    let event = if deleted {
                        Event::Delete(b)
                    } else {
                        Event::Apply(b)
                    };
                    self.blueprints.apply_watcher_event(&event);
                }
                _ => {}
            }
        }
    }

    /// Runs the reconciles the changes so far call for, and those their writes call for, until none is left.
    pub async fn run(&mut self) {
        for _ in 0..1000 {
            self.feed();
            let Some(work) = self.queue.pop_front() else {
                self.publish_events().await;
                return;
            };
            let failed = match work {
                Work::Job(r) => match self.ctx.jobs.get(&r) {
                    Some(j) => job::reconcile(j, self.ctx.clone())
                        .await
                        .err()
                        .map(|e| (Work::Job(r), e)),
                    None => None,
                },
                Work::Session(r) => match self.ctx.sessions.get(&r) {
                    Some(s) => session::reconcile(s, self.ctx.clone())
                        .await
                        .err()
                        .map(|e| (Work::Session(r), e)),
                    None => None,
                },
            };
            if let Some((work, e)) = failed {
                self.errors.push(e.to_string());
                enqueue(&mut self.queue, [work]);
            }
        }
        panic!("the reconciles never settled: {:?}", self.errors);
    }
}
