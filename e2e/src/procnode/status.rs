//! The Pod status a kubelet would report, built from what the processes did. Pure, so the shapes are tested
//! without a cluster.

use jiff::Timestamp;
use serde_json::{Value, json};

/// How one container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub name: String,
    pub exit_code: i32,
    /// `Completed`, `Error`, or the signal's name.
    pub reason: String,
    pub message: Option<String>,
    pub started: Timestamp,
    pub finished: Timestamp,
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn condition(kind: &str, status: bool, at: Timestamp, reason: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": time(at)});
    if let Some(r) = reason {
        c["reason"] = r.into();
    }
    c
}

fn base(phase: &str, started: Timestamp) -> Value {
    json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": time(started),
    })
}

/// Every container runs.
pub fn running(containers: &[String], images: &[String], started: Timestamp) -> Value {
    let mut status = base("Running", started);
    status["conditions"] = json!([
        condition("PodReadyToStartContainers", true, started, None),
        condition("Initialized", true, started, None),
        condition("ContainersReady", true, started, None),
        condition("Ready", true, started, None),
        condition("PodScheduled", true, started, None),
    ]);
    status["containerStatuses"] = containers
        .iter()
        .zip(images)
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": time(started)}},
            })
        })
        .collect();
    status
}

/// Every container has ended: `Succeeded` when all exited 0, else `Failed` (restart policy Never). `pod_reason`
/// is the Pod's own reason when it was stopped from outside (DeadlineExceeded).
pub fn ended(
    ended: &[Ended],
    images: &[String],
    started: Timestamp,
    pod_reason: Option<(&str, &str)>,
) -> Value {
    let succeeded = pod_reason.is_none() && ended.iter().all(|e| e.exit_code == 0);
    let mut status = base(if succeeded { "Succeeded" } else { "Failed" }, started);
    let now = ended.iter().map(|e| e.finished).max().unwrap_or(started);
    let why = if succeeded {
        "PodCompleted"
    } else {
        "PodFailed"
    };
    status["conditions"] = json!([
        condition("PodReadyToStartContainers", false, now, None),
        condition("Initialized", true, started, Some(why)),
        condition("ContainersReady", false, now, Some(why)),
        condition("Ready", false, now, Some(why)),
        condition("PodScheduled", true, started, None),
    ]);
    if let Some((reason, message)) = pod_reason {
        status["reason"] = reason.into();
        status["message"] = message.into();
    }
    status["containerStatuses"] = ended
        .iter()
        .zip(images)
        .map(|(e, image)| {
            let mut terminated = json!({
                "exitCode": e.exit_code, "reason": e.reason,
                "startedAt": time(e.started), "finishedAt": time(e.finished),
            });
            if let Some(m) = &e.message {
                terminated["message"] = m.clone().into();
            }
            json!({
                "name": e.name, "image": image, "imageID": "", "ready": false, "started": false,
                "restartCount": 0, "state": {"terminated": terminated},
            })
        })
        .collect();
    status
}

/// A Pod that could not start (a volume or the command was impossible): failed, with the reason and message.
pub fn not_started(
    containers: &[String],
    images: &[String],
    at: Timestamp,
    reason: &str,
    message: &str,
) -> Value {
    let ended: Vec<Ended> = containers
        .iter()
        .map(|name| Ended {
            name: name.clone(),
            exit_code: 128,
            reason: reason.into(),
            message: Some(message.into()),
            started: at,
            finished: at,
        })
        .collect();
    self::ended(&ended, images, at, Some((reason, message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn running_then_succeeded() {
        let t0 = at("2026-01-01T00:00:00Z");
        let r = running(&["agent".into()], &["img".into()], t0);
        assert_eq!(r["phase"], "Running");
        assert_eq!(
            r["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:00Z"
        );
        let e = Ended {
            name: "agent".into(),
            exit_code: 0,
            reason: "Completed".into(),
            message: Some("the result".into()),
            started: t0,
            finished: at("2026-01-01T00:00:05Z"),
        };
        let s = ended(std::slice::from_ref(&e), &["img".into()], t0, None);
        assert_eq!(s["phase"], "Succeeded");
        let term = &s["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(term["exitCode"], 0);
        assert_eq!(term["message"], "the result");
        assert_eq!(term["finishedAt"], "2026-01-01T00:00:05Z");

        let failed = ended(
            &[Ended {
                exit_code: 3,
                reason: "Error".into(),
                ..e.clone()
            }],
            &["img".into()],
            t0,
            None,
        );
        assert_eq!(failed["phase"], "Failed");
        assert!(failed.get("reason").is_none());
        let deadline = ended(
            &[e],
            &["img".into()],
            t0,
            Some(("DeadlineExceeded", "too long")),
        );
        assert_eq!(deadline["phase"], "Failed");
        assert_eq!(deadline["reason"], "DeadlineExceeded");
    }

    #[test]
    fn a_pod_that_cannot_start_fails_with_its_reason() {
        let s = not_started(
            &["agent".into()],
            &["img".into()],
            at("2026-01-01T00:00:00Z"),
            "NoCommand",
            "no command",
        );
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "NoCommand");
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["message"],
            "no command"
        );
    }
}
