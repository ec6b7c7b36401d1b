//! Requests the API server refuses for good (400, 403, 422) fail the job with the server's message and an Event,
//! instead of being retried in a loop.

use crds::{AgentBlueprint, AgentJob, JobPhase};
use e2e::agents::*;
use e2e::operator::Operator;
use e2e::with_temp_ns;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

/// The job's Failed status and the text of its `PodRejected` Event.
async fn rejected(client: &kube::Client, ns: &str, name: &str) -> (String, String) {
    let jobs = Api::<AgentJob>::namespaced(client.clone(), ns);
    let failed = wait_job(&jobs, name, JobPhase::Failed).await;
    assert_eq!(
        job_reason(&failed),
        Some("PodRejected"),
        "{:?}",
        failed.status
    );
    let error = failed.status.and_then(|s| s.error).unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    assert!(
        pods.get_opt(name).await.unwrap().is_none(),
        "no Pod for {name}"
    );
    let events = e2e::eventually("the PodRejected Event", TIMEOUT, || async {
        Api::<Event>::namespaced(client.clone(), ns)
            .list(
                &ListParams::default()
                    .fields(&format!("involvedObject.name={name},reason=PodRejected")),
            )
            .await
            .ok()
            .map(|l| l.items)
            .filter(|items| !items.is_empty())
    })
    .await;
    let note = events[0].message.clone().unwrap_or_default();
    (error, note)
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_fails_its_job_with_the_servers_message() {
    with_temp_ns("refuse", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs = Api::<AgentJob>::namespaced(client.clone(), &ns);

        // 100,000 four-byte characters: within the prompt bound (it counts characters), but 400 kB of Pod
        // annotation, over the API server's 256 KiB limit (422).
        let prompt = "\u{1F600}".repeat(100_000);
        create(
            &jobs,
            &job("huge", json!({"type": "Start", "sessionName": "huge", "prompt": prompt})),
        )
        .await;
        let (error, note) = rejected(&client, &ns, "huge").await;
        println!("huge prompt: {error}");
        assert!(error.starts_with("the API server refused the job's Pod: "), "{error}");
        assert!(error.contains("Too long"), "the server's own words: {error}");
        assert!(error.len() < 4000, "the message is bounded, not the prompt: {} bytes", error.len());
        assert_eq!(note, error);

        // A blueprint naming a ServiceAccount that does not exist: the Pod is forbidden (403).
        let bp: AgentBlueprint = serde_json::from_value(json!({
            "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentBlueprint",
            "metadata": {"name": "no-sa"},
            "spec": {"description": "names a missing account", "podTemplate": {"serviceAccountName": "nobody"}}
        }))
        .unwrap();
        Api::<AgentBlueprint>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &bp)
            .await
            .unwrap();
        create(&jobs, &start_with("sa", "sa", "no-sa")).await;
        let (error, _) = rejected(&client, &ns, "sa").await;
        println!("missing ServiceAccount: {error}");
        assert!(error.contains("serviceaccount \"nobody\" not found"), "{error}");
    })
    .await;
}
