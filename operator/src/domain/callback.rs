//! The Resume job that delivers child callbacks to a parent, and its prompt in the message format of the original
//! system.

use crds::{
    AgentJob, AgentJobSpec, AgentSession, AgentSessionStatus, CallbackOutcome, JobType,
    QueuedCallback, labels,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::lineage::recorded_parent;

fn body(entry: &QueuedCallback) -> String {
    match entry.outcome {
        CallbackOutcome::Succeeded => entry.result.clone().unwrap_or_default(),
        CallbackOutcome::Failed | CallbackOutcome::Stopped => {
            let what = if entry.outcome == CallbackOutcome::Stopped {
                "was stopped"
            } else {
                "failed"
            };
            let detail = entry
                .error
                .clone()
                .unwrap_or_else(|| format!("the child session {what}"));
            format!("Error: Child session failed.\n\n{detail}")
        }
    }
}

/// One callback: the single-child form; several: the aggregated form, in queue (arrival) order.
pub fn message(entries: &[QueuedCallback]) -> String {
    match entries {
        [] => String::new(),
        [one] => format!(
            "The child agent session \"{}\" has completed.\n\n## Child Result\n\n{}\n\nPlease continue with the orchestration based on this result.",
            one.child_session,
            body(one)
        ),
        many => {
            let blocks: Vec<String> = many
                .iter()
                .map(|e| format!("### Child: {}\n\n{}", e.child_session, body(e)))
                .collect();
            format!(
                "Multiple child agent sessions have completed.\n\n{}\n\nPlease continue with the orchestration based on these results.",
                blocks.join("\n\n---\n\n")
            )
        }
    }
}

/// The grandparent UID a delivery job calls back: the one the parent's last job was bound to, when that job
/// called back the parent's current parent. Recorded on the delivery job at once, so it needs no binding write.
pub fn inherited_parent(last: Option<&AgentJob>, status: &AgentSessionStatus) -> Option<String> {
    last.filter(|l| {
        l.spec.callback
            && l.spec.parent_session_name.is_some()
            && l.spec.parent_session_name == status.parent_session_name
    })
    .and_then(|l| recorded_parent(l).map(String::from))
}

/// The Resume job that delivers `entries` to `parent`. It calls the parent's own parent back when the parent's last
/// job did (so a middle session of a tree reports its continued work upwards, as its first turn did).
pub fn delivery_job(
    parent: &AgentSession,
    status: &AgentSessionStatus,
    name: &str,
    entries: &[QueuedCallback],
    inherit_callback: Option<String>,
) -> AgentJob {
    let uids: Vec<&str> = entries.iter().map(|e| e.child_job_uid.as_str()).collect();
    let jobs: Vec<&str> = entries.iter().map(|e| e.child_job.as_str()).collect();
    let grandparent = status.parent_session_name.clone();
    let callback = grandparent.is_some() && inherit_callback.is_some();
    let mut annotations: std::collections::BTreeMap<String, String> = [
        (labels::DELIVERS.to_string(), uids.join(",")),
        (labels::DELIVERS_JOBS.to_string(), jobs.join(",")),
    ]
    .into();
    if let Some(uid) = inherit_callback.filter(|_| callback) {
        annotations.insert(labels::PARENT_UID.to_string(), uid);
    }
    AgentJob {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: parent.namespace(),
            labels: Some(
                [
                    (labels::CALLBACK_DELIVERY.to_string(), "true".to_string()),
                    (labels::SESSION.to_string(), parent.name_any()),
                    (
                        labels::TREE.to_string(),
                        super::tree::tree_label(parent)
                            .map(str::to_string)
                            .unwrap_or_else(|| parent.name_any()),
                    ),
                    (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                ]
                .into(),
            ),
            annotations: Some(annotations),
            // Made with its session's ownerReference, so the job controller has no labels to add before its Pod.
            owner_references: super::tree::session_reference(parent).map(|r| vec![r]),
            ..Default::default()
        },
        spec: AgentJobSpec {
            job_type: JobType::Resume,
            session_name: parent.name_any(),
            prompt: message(entries),
            blueprint: None,
            parent_session_name: if callback { grandparent } else { None },
            callback,
            project_dir: None,
            timeout_seconds: None,
            ttl_seconds_after_finished: None,
            backoff_limit: None,
            parent_close_policy: None,
            budget: None,
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn entry(
        child: &str,
        outcome: CallbackOutcome,
        result: Option<&str>,
        error: Option<&str>,
    ) -> QueuedCallback {
        QueuedCallback {
            child_session: child.into(),
            child_job: format!("{child}-job"),
            child_job_uid: format!("u-{child}"),
            outcome,
            result: result.map(Into::into),
            error: error.map(Into::into),
            enqueue_time: Time("2026-01-01T00:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn single_child_form() {
        let m = message(&[entry("c1", CallbackOutcome::Succeeded, Some("42"), None)]);
        assert_eq!(
            m,
            "The child agent session \"c1\" has completed.\n\n## Child Result\n\n42\n\nPlease continue with the orchestration based on this result."
        );
    }

    #[test]
    fn aggregated_form_keeps_arrival_order() {
        let m = message(&[
            entry("c2", CallbackOutcome::Succeeded, Some("two"), None),
            entry(
                "c1",
                CallbackOutcome::Failed,
                None,
                Some("agent exited with code 1"),
            ),
        ]);
        assert_eq!(
            m,
            "Multiple child agent sessions have completed.\n\n### Child: c2\n\ntwo\n\n---\n\n### Child: c1\n\nError: Child session failed.\n\nagent exited with code 1\n\nPlease continue with the orchestration based on these results."
        );
    }

    mod delivery {
        use super::super::*;
        use crate::domain::fixtures::yaml;

        fn middle() -> AgentSession {
            yaml("metadata: {name: mid, namespace: ns, uid: u-mid}\nspec: {parentSessionName: top}")
        }

        fn status() -> AgentSessionStatus {
            yaml("{phase: Idle, jobCount: 1, lastJob: mid, parentSessionName: top}")
        }

        fn last(callback: bool) -> AgentJob {
            yaml(&format!(
                r#"
metadata: {{name: mid, namespace: ns, annotations: {{agentorchestrator.dev/parent-uid: u-top}}}}
spec: {{type: Start, sessionName: mid, prompt: p, parentSessionName: top, callback: {callback}}}
"#
            ))
        }

        #[test]
        fn a_delivery_lists_what_it_carries_and_prompts_with_it() {
            let entries = [
                super::entry("c1", CallbackOutcome::Succeeded, Some("one"), None),
                super::entry("c2", CallbackOutcome::Succeeded, Some("two"), None),
            ];
            let job = delivery_job(&middle(), &status(), "mid-cb-1", &entries, None);
            assert_eq!(job.name_any(), "mid-cb-1");
            assert_eq!(job.spec.job_type, JobType::Resume);
            assert_eq!(job.spec.session_name, "mid");
            assert_eq!(job.spec.prompt, message(&entries));
            assert_eq!(job.annotations()[labels::DELIVERS], "u-c1,u-c2");
            assert_eq!(job.annotations()[labels::DELIVERS_JOBS], "c1-job,c2-job");
            assert_eq!(job.labels()[labels::CALLBACK_DELIVERY], "true");
            assert!(!job.spec.callback);
            assert!(job.spec.parent_session_name.is_none());
            assert!(!job.annotations().contains_key(labels::PARENT_UID));
        }

        #[test]
        fn a_middle_session_reports_up_bound_to_the_grandparent_its_last_job_was_bound_to() {
            let inherit = inherited_parent(Some(&last(true)), &status());
            assert_eq!(inherit.as_deref(), Some("u-top"));
            let entries = [super::entry(
                "c1",
                CallbackOutcome::Succeeded,
                Some("one"),
                None,
            )];
            let job = delivery_job(&middle(), &status(), "mid-cb-1", &entries, inherit);
            assert!(job.spec.callback);
            assert_eq!(job.spec.parent_session_name.as_deref(), Some("top"));
            assert_eq!(job.annotations()[labels::PARENT_UID], "u-top");
            assert_eq!(inherited_parent(Some(&last(false)), &status()), None);
            assert_eq!(inherited_parent(None, &status()), None);
        }
    }

    #[test]
    fn a_stopped_child_is_reported_as_a_failure() {
        let m = message(&[entry("c1", CallbackOutcome::Stopped, None, None)]);
        assert!(
            m.contains("Error: Child session failed.\n\nthe child session was stopped"),
            "{m}"
        );
    }
}

pub mod rules {
    //! Who gets a callback, and when.

    use crds::{AgentJob, AgentSession, CallbackState, labels};
    use kube::ResourceExt;
    use sha2::{Digest, Sha256};

    use crate::domain::lineage::recorded_parent;
    use crate::domain::order::is_finished;

    /// The callback state recorded on the child (absent: not yet Enqueued).
    pub fn state(job: &AgentJob) -> Option<CallbackState> {
        job.status.as_ref()?.callback.as_ref().map(|c| c.state)
    }

    /// Whether the child's callback has left the child's hands: in a queue, delivered or dropped.
    pub fn settled(job: &AgentJob) -> bool {
        matches!(
            state(job),
            Some(CallbackState::Enqueued | CallbackState::Delivered | CallbackState::Dropped)
        )
    }

    /// Whether `job` calls back `parent`: it asked for a callback, names the parent, and is bound to that very
    /// session (its UID recorded on the child, see `lineage::bind`). A child not bound yet calls back no one: the job
    /// controller records its binding first, so every later step reads the same, durable answer.
    pub fn calls_back(job: &AgentJob, parent: &AgentSession) -> bool {
        job.spec.callback
            && job.spec.parent_session_name.as_deref() == Some(parent.name_any().as_str())
            && job.namespace() == parent.namespace()
            && recorded_parent(job).is_some()
            && recorded_parent(job) == parent.uid().as_deref()
    }

    /// Whether the child's job has ended, so that its callback can be queued. A deleted running job counts once
    /// the job controller has marked it Stopped (the finalizer holds it until then).
    pub fn ended(job: &AgentJob) -> bool {
        is_finished(job)
    }

    /// The name of the Resume job that delivers a queue whose first entry is the child job `first_uid`.
    /// Deterministic, so that a delivery repeated after a crash finds the job it already made.
    pub fn delivery_job_name(parent: &str, first_uid: &str) -> String {
        let digest = Sha256::digest(first_uid.as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        let prefix: String = parent.chars().take(50).collect();
        format!("{}-cb-{hex}", prefix.trim_end_matches('-'))
    }

    /// The child job UIDs a delivery job carries.
    pub fn delivered_uids(job: &AgentJob) -> Vec<String> {
        job.annotations()
            .get(labels::DELIVERS)
            .map(|s| {
                s.split(',')
                    .filter(|u| !u.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::domain::fixtures::yaml;

        fn child(annotations: &str, status: &str) -> AgentJob {
            yaml(&format!(
                r#"
metadata: {{name: c, namespace: ns, uid: u-c, creationTimestamp: "2026-01-01T00:00:05Z", annotations: {annotations}}}
spec: {{type: Start, sessionName: c, prompt: p, parentSessionName: boss, callback: true}}
status: {status}
"#
            ))
        }

        fn parent(uid: &str) -> AgentSession {
            yaml(&format!(
                "metadata: {{name: boss, namespace: ns, uid: {uid}, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{}}"
            ))
        }

        #[test]
        fn the_recorded_parent_uid_decides() {
            let by_gateway = child("{agentorchestrator.dev/parent-uid: u-1}", "{}");
            let by_operator = child("{}", "{callback: {state: Pending, parentUid: u-1}}");
            for c in [&by_gateway, &by_operator] {
                assert!(calls_back(c, &parent("u-1")));
                assert!(
                    !calls_back(c, &parent("u-2")),
                    "a namesake is not the parent"
                );
            }
        }

        #[test]
        fn an_unbound_child_calls_back_no_one_yet() {
            // Even a parent older than the child: the binding is recorded first, then used.
            assert!(!calls_back(&child("{}", "{}"), &parent("u-1")));
        }

        #[test]
        fn delivery_names_are_stable_and_short() {
            let a = delivery_job_name(&"p".repeat(60), "uid-1");
            // Golden value: a delivery repeated by another operator build must find the same job.
            assert_eq!(a, format!("{}-cb-4a49acf8", "p".repeat(50)));
            assert_ne!(a, delivery_job_name(&"p".repeat(60), "uid-2"));
            assert!(a.len() <= 63, "{a}");
        }
    }
}
