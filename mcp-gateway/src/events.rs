//! Kubernetes Events the gateway records on sessions (a refused stop or resume), so that `kubectl describe` of the
//! session shows who tried. They are published by a task of their own: a tool answer never waits for one, and a
//! failure to record one (no RBAC for events, API busy) is logged, never shown to the caller.

use crds::AgentSession;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

pub const REPORTER: &str = "mcp-gateway";
/// Reason of the Event on a session whose stop or resume was refused.
pub const REFUSED_REASON: &str = "OutsideCallerReach";

pub struct Events {
    queue: mpsc::UnboundedSender<(Event, ObjectReference)>,
}

impl Events {
    /// Starts the publishing task (needs a Tokio runtime).
    pub fn start(client: Client) -> Events {
        let reporter = Reporter {
            controller: REPORTER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client, reporter);
        let (queue, mut pending) = mpsc::unbounded::<(Event, ObjectReference)>();
        tokio::spawn(async move {
            while let Some((event, object)) = pending.next().await {
                if let Err(e) = recorder.publish(&event, &object).await {
                    tracing::warn!(object = ?object.name, reason = %event.reason, error = %e,
                        "could not record event");
                }
            }
        });
        Events { queue }
    }

    /// A Warning Event on `session`: the call `action` (a tool's verb, e.g. `Stop`) was refused, with `note`.
    pub fn refused(&self, session: &AgentSession, action: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: REFUSED_REASON.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        // The channel closes only when the gateway stops.
        let _ = self.queue.unbounded_send((event, session.object_ref(&())));
    }
}
