//! One session reconcile, planned whole. The controller fetches the session, its jobs and its children (and fresh
//! copies of the children `to_read` names); `plan` decides from those alone what to queue, what to mark, which
//! delivery job to make, and the session's next status; the controller then writes it all in the order the
//! exactly-once argument of `controller::callbacks` needs: queue, marks `Enqueued`, delivery job, session status,
//! marks `Delivered`.

use std::collections::HashSet;

use crds::contract::bound_result;
use crds::{
    AgentJob, AgentSession, AgentSessionStatus, CallbackOutcome, CallbackProgress, CallbackState,
    JobPhase, MAX_PROMPT, QueuedCallback, SessionPhase, labels,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::callback::rules::{
    calls_back, delivered_uids, delivery_job_name, ended, settled, state,
};
use super::callback::{delivery_job, inherited_parent, message};
use super::session::{SessionEvent, SessionView, can_deliver, finish};

/// What the fetch step read.
pub struct SessionFacts<'a> {
    pub session: &'a AgentSession,
    /// The jobs naming the session: its own runs and its delivery jobs.
    pub jobs: Vec<&'a AgentJob>,
    /// The jobs that name the session as the parent to call back.
    pub children: Vec<&'a AgentJob>,
    /// Copies read from the API server (not the cache) of the children `to_read` chose; a child missing here is
    /// gone. The cache may not show a mark written a moment ago: only a fresh read can rule out a second entry.
    pub fresh: Vec<&'a AgentJob>,
    /// Whether the Pod of the named job still exists.
    pub pod_alive: &'a (dyn Fn(&str) -> bool + Sync),
    pub now: Time,
}

/// Step 1: the callbacks that join the queue, and the session status that records them.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueue {
    pub entries: Vec<QueuedCallback>,
    pub status: AgentSessionStatus,
}

/// Step 3: the Resume job that carries the head of the queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub name: String,
    /// The job to create; `None` when it exists already (made before a crash) and is taken as it is.
    pub create: Option<AgentJob>,
    /// The entries it carries, in queue order.
    pub carried: Vec<QueuedCallback>,
}

/// Everything one reconcile of a session writes, in the order it is written.
#[derive(Debug, Clone)]
pub struct SessionWork {
    pub enqueue: Option<Enqueue>,
    /// Step 2: the UIDs of children in the queue not yet marked `Enqueued`, and the mark.
    pub mark_enqueued: Vec<String>,
    pub enqueued: CallbackProgress,
    pub delivery: Option<Delivery>,
    /// Step 4: the session's next status (with the delivery taken, if there is one) and its Events.
    pub status: AgentSessionStatus,
    pub events: Vec<SessionEvent>,
    /// Step 5: the UIDs of children whose entries left the queue in a delivery job the facts show, and their marks.
    pub mark_delivered: Vec<(String, CallbackProgress)>,
}

fn is_delivery(job: &AgentJob) -> bool {
    job.labels()
        .get(labels::CALLBACK_DELIVERY)
        .map(String::as_str)
        == Some("true")
}

fn deliveries<'a>(facts: &SessionFacts<'a>) -> impl Iterator<Item = &'a AgentJob> {
    facts.jobs.clone().into_iter().filter(|j| is_delivery(j))
}

/// The children whose callbacks may join the queue now (ended, not settled, neither queued nor carried by a
/// delivery job), in arrival order: the controller reads each afresh before `plan` takes it.
pub fn to_read<'a>(
    session: &AgentSession,
    jobs: &[&'a AgentJob],
    children: &[&'a AgentJob],
) -> Vec<&'a AgentJob> {
    let status = session.status.clone().unwrap_or_default();
    let queued: HashSet<&str> = status
        .callback_queue
        .iter()
        .map(|e| e.child_job_uid.as_str())
        .collect();
    let delivered: HashSet<String> = jobs
        .iter()
        .filter(|j| is_delivery(j))
        .flat_map(|j| delivered_uids(j))
        .collect();
    let mut ready: Vec<&AgentJob> = children
        .iter()
        .copied()
        .filter(|j| calls_back(j, session) && ended(j) && !settled(j))
        .filter(|j| {
            let uid = j.uid().unwrap_or_default();
            !queued.contains(uid.as_str()) && !delivered.contains(&uid)
        })
        .collect();
    // Arrival order: when the children ended.
    ready.sort_by_key(|j| {
        (
            j.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref().map(|t| t.0)),
            j.name_any(),
        )
    });
    ready
}

fn outcome(job: &AgentJob) -> CallbackOutcome {
    let status = job.status.as_ref();
    match (
        status.and_then(|s| s.phase),
        status.and_then(|s| s.reason.as_deref()),
    ) {
        (Some(JobPhase::Succeeded), _) => CallbackOutcome::Succeeded,
        (_, reason) if super::order::is_stop_reason(reason) => CallbackOutcome::Stopped,
        _ => CallbackOutcome::Failed,
    }
}

/// Why the operator stopped a job (BudgetExceeded), from its Failed condition: the agent's own last words (killed by
/// SIGTERM) would hide the cause from the parent.
fn stop_cause(status: &crds::AgentJobStatus) -> Option<String> {
    let reason = status
        .reason
        .as_deref()
        .filter(|r| *r == "BudgetExceeded")?;
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed")?;
    Some(format!("{reason}: {}", failed.message))
}

/// The queue entry of an ended child.
pub fn entry(job: &AgentJob, now: &Time) -> QueuedCallback {
    let status = job.status.clone().unwrap_or_default();
    let error = stop_cause(&status).or(status.error);
    QueuedCallback {
        child_session: job.spec.session_name.clone(),
        child_job: job.name_any(),
        child_job_uid: job.uid().unwrap_or_default(),
        outcome: outcome(job),
        result: status.result.map(|r| bound_result(&r).0),
        error,
        enqueue_time: now.clone(),
    }
}

pub fn plan(facts: &SessionFacts) -> SessionWork {
    let session = facts.session;
    let now = &facts.now;

    // 1. Queued: the fresh copies of the children that ended, still neither settled nor gone.
    let entries: Vec<QueuedCallback> = to_read(session, &facts.jobs, &facts.children)
        .into_iter()
        .filter_map(|child| {
            facts
                .fresh
                .iter()
                .find(|f| f.uid() == child.uid() && f.name_any() == child.name_any())
        })
        .filter(|f| !settled(f) && ended(f))
        .map(|f| entry(f, now))
        .collect();
    let mut queued = session.clone();
    let enqueue = (!entries.is_empty()).then(|| {
        let mut status = session.status.clone().unwrap_or_default();
        status.callback_queue.extend(entries.iter().cloned());
        finish(&mut status, session, now);
        queued.status = Some(status.clone());
        Enqueue { entries, status }
    });
    let queue: Vec<QueuedCallback> = queued
        .status
        .as_ref()
        .map(|s| s.callback_queue.clone())
        .unwrap_or_default();

    // 2. Marked: every queued child still there that does not say Enqueued yet (one that is gone has nothing to
    // mark: its entry is all that is left of it).
    let mark_enqueued: Vec<String> = queue
        .iter()
        .filter_map(|e| {
            facts
                .children
                .iter()
                .copied()
                .find(|c| c.uid().as_deref() == Some(e.child_job_uid.as_str()))
        })
        .filter(|c| state(c) != Some(CallbackState::Enqueued))
        .filter_map(|c| c.uid())
        .collect();
    let enqueued = CallbackProgress {
        state: CallbackState::Enqueued,
        reason: Some("Queued".into()),
        message: Some(format!(
            "waiting in the callback queue of session {}",
            session.name_any()
        )),
        parent_uid: session.uid(),
        delivered_by: None,
    };

    // The session's own state machine, on the status as queued.
    let view = SessionView {
        session: &queued,
        jobs: facts.jobs.clone(),
        pod_alive: facts.pod_alive,
        now: now.clone(),
    };
    let planned = super::session::plan(&view);
    let mut status = planned.status;

    // 3. Delivered: when the session is free, the head of the queue (every entry is marked by now) goes out in one
    // Resume job, as many entries as its prompt bound holds.
    let delivery = deliver(facts, &queued, &mut status);

    // 5. Marks Delivered: children marked Enqueued (now, or before) whose entries left the queue in a delivery job.
    let left: HashSet<&str> = status
        .callback_queue
        .iter()
        .map(|e| e.child_job_uid.as_str())
        .collect();
    let deliveries: Vec<&AgentJob> = deliveries(facts).collect();
    let mark_delivered = facts
        .children
        .iter()
        .copied()
        .filter(|c| calls_back(c, session))
        .filter(|c| {
            state(c) == Some(CallbackState::Enqueued)
                || c.uid().is_some_and(|uid| mark_enqueued.contains(&uid))
        })
        .filter_map(|child| {
            let uid = child.uid().unwrap_or_default();
            if left.contains(uid.as_str()) {
                return None;
            }
            let by = deliveries
                .iter()
                .find(|d| delivered_uids(d).contains(&uid))?;
            Some((
                uid,
                CallbackProgress {
                    state: CallbackState::Delivered,
                    reason: Some("Delivered".into()),
                    message: Some(format!(
                        "delivered to session {} by Resume job {}",
                        session.name_any(),
                        by.name_any()
                    )),
                    parent_uid: session.uid(),
                    delivered_by: Some(by.name_any()),
                },
            ))
        })
        .collect();

    SessionWork {
        enqueue,
        mark_enqueued,
        enqueued,
        delivery,
        status,
        events: planned.events,
        mark_delivered,
    }
}

fn deliver(
    facts: &SessionFacts,
    session: &AgentSession,
    status: &mut AgentSessionStatus,
) -> Option<Delivery> {
    if !can_deliver(status) {
        return None;
    }
    let mut carried: Vec<QueuedCallback> = Vec::new();
    for e in status.callback_queue.iter() {
        carried.push(e.clone());
        if message(&carried).chars().count() > MAX_PROMPT {
            carried.pop();
            break;
        }
    }
    let first = carried.first()?;
    let name = delivery_job_name(&session.name_any(), &first.child_job_uid);
    let find = |n: &str| facts.jobs.iter().copied().find(|j| j.name_any() == n);
    let (create, delivered) = match find(&name) {
        // Made before a crash: it carries what it lists, and no second one is made.
        Some(job) => (None, delivered_uids(job)),
        None => {
            // The delivery calls the parent's own parent back if the job that just ended on the parent did.
            let last = status.last_job.as_deref().and_then(find);
            let inherit = inherited_parent(last, status);
            let mut job = delivery_job(session, status, &name, &carried, inherit);
            // The tree's trace goes on through the hop: the delivery continues the job that ran before it.
            crate::trace::continue_job(&mut job, last);
            let uids = carried.iter().map(|e| e.child_job_uid.clone()).collect();
            (Some(job), uids)
        }
    };
    let carried = take(status, session, &name, &delivered, &facts.now);
    Some(Delivery {
        name,
        create,
        carried,
    })
}

/// The session takes the delivery job `name` that carries the child job UIDs `delivered` as its current job: those
/// entries leave the queue in the same write. Returns the entries taken.
pub fn take(
    status: &mut AgentSessionStatus,
    session: &AgentSession,
    name: &str,
    delivered: &[String],
    now: &Time,
) -> Vec<QueuedCallback> {
    let carried: Vec<QueuedCallback> = status
        .callback_queue
        .iter()
        .filter(|e| delivered.contains(&e.child_job_uid))
        .cloned()
        .collect();
    status
        .callback_queue
        .retain(|e| !delivered.contains(&e.child_job_uid));
    status.current_job = Some(name.into());
    status.job_count += 1;
    status.phase = Some(SessionPhase::Running);
    status.reason = Some("CallbackDelivery".into());
    finish(status, session, now);
    carried
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn at() -> Time {
        Time("2026-01-01T00:00:10Z".parse().unwrap())
    }

    fn parent(status: &str) -> AgentSession {
        yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {{name: boss, namespace: ns, uid: u-boss, generation: 1}}
spec: {{}}
status: {status}
"#
        ))
    }

    fn own_job(name: &str, phase: &str) -> AgentJob {
        yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {{name: {name}, namespace: ns, uid: u-{name}, creationTimestamp: "2026-01-01T00:00:01Z"}}
spec: {{type: Resume, sessionName: boss, prompt: p}}
status: {{phase: {phase}}}
"#
        ))
    }

    /// Child `name` of boss, ended with result `r-NAME` at second `ended`, its callback in `state`.
    fn child(name: &str, ended: u32, state: &str) -> AgentJob {
        yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {{name: {name}, namespace: ns, uid: u-{name}, annotations: {{agentorchestrator.dev/parent-uid: u-boss}}}}
spec: {{type: Start, sessionName: w-{name}, prompt: p, parentSessionName: boss, callback: true}}
status: {{phase: Succeeded, result: r-{name}, completionTime: "2026-01-01T00:00:0{ended}Z", callback: {{state: {state}, parentUid: u-boss}}}}
"#
        ))
    }

    const IDLE: &str = "{phase: Idle, jobCount: 1, lastJob: boss}";

    fn queued(names: &[&str]) -> String {
        let entries: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{childSession: w-{n}, childJob: {n}, childJobUid: u-{n}, outcome: Succeeded, result: r-{n}, enqueueTime: "2026-01-01T00:00:06Z"}}"#))
            .collect();
        format!(
            "{{phase: Idle, jobCount: 1, lastJob: boss, callbackQueue: [{}]}}",
            entries.join(", ")
        )
    }

    fn no_pods(_: &str) -> bool {
        false
    }

    fn facts<'a>(
        session: &'a AgentSession,
        jobs: &'a [AgentJob],
        children: &'a [AgentJob],
        fresh: &'a [AgentJob],
    ) -> SessionFacts<'a> {
        SessionFacts {
            session,
            jobs: jobs.iter().collect(),
            children: children.iter().collect(),
            fresh: fresh.iter().collect(),
            pod_alive: &no_pods,
            now: at(),
        }
    }

    fn uids(entries: &[QueuedCallback]) -> Vec<&str> {
        entries.iter().map(|e| e.child_job_uid.as_str()).collect()
    }

    #[test]
    fn children_that_ended_are_read_afresh_in_the_order_they_ended() {
        let session = parent(&queued(&["c0"]));
        let children = [
            child("c2", 5, "Pending"),
            child("c1", 3, "Pending"),
            child("c0", 1, "Pending"),
            child("c3", 2, "Delivered"),
        ];
        let jobs = [own_job("boss", "Succeeded")];
        let read = to_read(
            &session,
            &jobs.iter().collect::<Vec<_>>(),
            &children.iter().collect::<Vec<_>>(),
        );
        let names: Vec<String> = read.iter().map(|j| j.name_any()).collect();
        assert_eq!(names, ["c1", "c2"], "c0 is queued already, c3 settled");
    }

    #[test]
    fn an_idle_parent_queues_marks_and_delivers_its_ended_children_in_one_plan() {
        let session = parent(IDLE);
        let children = [child("c2", 5, "Pending"), child("c1", 3, "Pending")];
        let jobs = [own_job("boss", "Succeeded")];
        let work = plan(&facts(&session, &jobs, &children, &children));
        let enqueue = work.enqueue.expect("entries to queue");
        assert_eq!(uids(&enqueue.entries), ["u-c1", "u-c2"], "arrival order");
        assert_eq!(enqueue.status.callback_queue_length, 2);
        assert_eq!(enqueue.entries[0].result.as_deref(), Some("r-c1"));
        assert_eq!(work.mark_enqueued, ["u-c1", "u-c2"]);
        assert_eq!(work.enqueued.state, CallbackState::Enqueued);
        let delivery = work.delivery.expect("a delivery");
        assert_eq!(delivery.name, delivery_job_name("boss", "u-c1"));
        let job = delivery.create.expect("a job to create");
        assert!(job.spec.prompt.contains("r-c1") && job.spec.prompt.contains("r-c2"));
        assert_eq!(uids(&delivery.carried), ["u-c1", "u-c2"]);
        assert!(work.status.callback_queue.is_empty());
        assert_eq!(
            work.status.current_job.as_deref(),
            Some(delivery.name.as_str())
        );
        assert_eq!(work.status.phase, Some(SessionPhase::Running));
        assert_eq!(work.status.job_count, 2);
        assert!(
            work.mark_delivered.is_empty(),
            "Delivered is marked once the delivery job is seen, after the status that takes it"
        );
    }

    #[test]
    fn a_fresh_read_that_shows_a_mark_the_cache_missed_queues_nothing() {
        let session = parent(IDLE);
        let cached = [child("c1", 3, "Pending")];
        let fresh = [child("c1", 3, "Enqueued")];
        let jobs = [own_job("boss", "Succeeded")];
        let work = plan(&facts(&session, &jobs, &cached, &fresh));
        assert!(work.enqueue.is_none());
        assert!(work.delivery.is_none());
        // And a child gone since the cache saw it (no fresh copy) is not queued either.
        let work = plan(&facts(&session, &jobs, &cached, &[]));
        assert!(work.enqueue.is_none());
    }

    #[test]
    fn a_busy_parent_queues_and_marks_but_delivers_nothing() {
        let session = parent("{phase: Running, jobCount: 2, currentJob: r1, lastJob: boss}");
        let children = [child("c1", 3, "Pending")];
        let jobs = [own_job("boss", "Succeeded"), own_job("r1", "Running")];
        let work = plan(&facts(&session, &jobs, &children, &children));
        assert_eq!(uids(&work.enqueue.unwrap().entries), ["u-c1"]);
        assert_eq!(work.mark_enqueued, ["u-c1"]);
        assert!(work.delivery.is_none());
        assert_eq!(work.status.callback_queue.len(), 1);
        assert_eq!(work.status.current_job.as_deref(), Some("r1"));
    }

    #[test]
    fn a_delivery_job_left_by_a_crash_is_taken_as_it_is_and_its_children_marked_delivered() {
        let session = parent(&queued(&["c1", "c2"]));
        let children = [child("c1", 3, "Enqueued"), child("c2", 5, "Enqueued")];
        let name = delivery_job_name("boss", "u-c1");
        // It carries only c1: c2 was queued after it was made.
        let delivery: AgentJob = yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata:
  name: {name}
  namespace: ns
  uid: u-d
  labels: {{agentorchestrator.dev/callback-delivery: "true", agentorchestrator.dev/session: boss}}
  annotations: {{agentorchestrator.dev/delivers: u-c1}}
spec: {{type: Resume, sessionName: boss, prompt: x}}
"#
        ));
        let jobs = [own_job("boss", "Succeeded"), delivery];
        let work = plan(&facts(&session, &jobs, &children, &[]));
        assert!(work.enqueue.is_none() && work.mark_enqueued.is_empty());
        let d = work.delivery.expect("the delivery taken");
        assert!(d.create.is_none(), "no second job");
        assert_eq!(uids(&d.carried), ["u-c1"]);
        assert_eq!(
            uids(&work.status.callback_queue),
            ["u-c2"],
            "c2 waits for the next"
        );
        assert_eq!(work.status.current_job.as_deref(), Some(name.as_str()));
        let marked: Vec<(&str, Option<&str>)> = work
            .mark_delivered
            .iter()
            .map(|(uid, p)| (uid.as_str(), p.delivered_by.as_deref()))
            .collect();
        assert_eq!(marked, [("u-c1", Some(name.as_str()))]);
    }

    #[test]
    fn a_child_bound_to_another_session_of_the_name_is_not_queued() {
        let session = parent(IDLE);
        let mut other = child("c1", 3, "Pending");
        other
            .annotations_mut()
            .insert(labels::PARENT_UID.into(), "u-older-boss".into());
        let progress = other.status.as_mut().unwrap().callback.as_mut().unwrap();
        progress.parent_uid = Some("u-older-boss".into());
        let children = [other];
        let jobs = [own_job("boss", "Succeeded")];
        let work = plan(&facts(&session, &jobs, &children, &children));
        assert!(work.enqueue.is_none() && work.delivery.is_none());
    }
}
