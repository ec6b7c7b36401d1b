//! Bad input is refused by the API server itself (CRD schema and CEL rules), with a readable message, and nothing
//! is created. No operator runs here: admission alone must hold the line.

use crds::{AgentBlueprint, AgentJob, AgentSession};
use e2e::agents::{install_crds, start};
use e2e::with_temp_ns;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Posts the job as raw JSON (it may not even deserialise into our types) and expects a refusal naming `expect`.
async fn refused(jobs: &Api<AgentJob>, name: &str, spec: Value, expect: &str) {
    let raw: Api<DynamicObject> = Api::namespaced_with(
        jobs.clone().into_client(),
        jobs.namespace().unwrap(),
        &ApiResource::erase::<AgentJob>(&()),
    );
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentJob", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    let err = raw
        .create(&PostParams::default(), &object)
        .await
        .expect_err(&format!("{spec} must be refused"));
    let text = err.to_string();
    assert!(
        text.contains(expect),
        "refusal of {spec} should mention {expect:?}, got: {text}"
    );
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

#[tokio::test]
async fn invalid_agent_jobs_are_refused_with_a_reason_and_nothing_is_created() {
    with_temp_ns("admit", |client: Client, ns| async move {
        install_crds(&client).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let p = "do it";
        refused(
            &jobs,
            "j1",
            json!({"type": "Start", "sessionName": "Bad_Name", "prompt": p}),
            "sessionName",
        )
        .await;
        refused(
            &jobs,
            "j2",
            json!({"type": "Start", "sessionName": long(61), "prompt": p}),
            "sessionName",
        )
        .await;
        refused(
            &jobs,
            "j3",
            json!({"type": "Start", "sessionName": "s", "prompt": ""}),
            "prompt",
        )
        .await;
        refused(
            &jobs,
            "j4",
            json!({"type": "Start", "sessionName": "s", "prompt": long(100_001)}),
            "prompt",
        )
        .await;
        refused(
            &jobs,
            "j5",
            json!({"type": "Stop", "sessionName": "s", "prompt": p}),
            "Unsupported value",
        )
        .await;
        refused(
            &jobs,
            "j6",
            json!({"sessionName": "s", "prompt": p}),
            "type",
        )
        .await;
        refused(
            &jobs,
            "j7",
            json!({"type": "Resume", "sessionName": "s", "prompt": p, "blueprint": "bp"}),
            "blueprint may only be set on Start jobs",
        )
        .await;
        refused(
            &jobs,
            "j8",
            json!({"type": "Start", "sessionName": "s", "prompt": p, "parentSessionName": "s"}),
            "cannot be its own parent",
        )
        .await;
        refused(
            &jobs,
            "j9",
            json!({"type": "Start", "sessionName": "s", "prompt": p, "callback": true}),
            "callback: true requires parentSessionName",
        )
        .await;
        refused(
            &jobs,
            "j10",
            json!({"type": "Start", "sessionName": "s", "prompt": p, "projectDir": "../etc"}),
            "projectDir",
        )
        .await;
        refused(
            &jobs,
            "j11",
            json!({"type": "Start", "sessionName": "s", "prompt": p, "timeoutSeconds": 0}),
            "timeoutSeconds",
        )
        .await;
        refused(
            &jobs,
            &long(64),
            json!({"type": "Start", "sessionName": "s", "prompt": p}),
            "at most 63 characters",
        )
        .await;
        assert!(
            jobs.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "a refused job was stored"
        );

        // Immutable fields: the first version is accepted, changes to type, sessionName or prompt are refused.
        jobs.create(&PostParams::default(), &start("ok", "s"))
            .await
            .expect("a valid job is accepted");
        for (patch, expect) in [
            (
                json!({"spec": {"sessionName": "other"}}),
                "sessionName is immutable",
            ),
            (json!({"spec": {"type": "Resume"}}), "type is immutable"),
            (
                json!({"spec": {"prompt": "changed"}}),
                "prompt is immutable",
            ),
        ] {
            let err = jobs
                .patch("ok", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect_err("immutable");
            assert!(err.to_string().contains(expect), "{err}");
        }
        let stored = jobs.get("ok").await.unwrap();
        assert_eq!(
            (
                stored.spec.session_name.as_str(),
                stored.spec.prompt.as_str()
            ),
            ("s", "start s")
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_sessions_and_blueprints_are_refused() {
    with_temp_ns("admit2", |client: Client, ns| async move {
        install_crds(&client).await;
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let long_name: AgentSession = serde_json::from_value(json!({
            "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentSession",
            "metadata": {"name": long(61)}, "spec": {}
        }))
        .unwrap();
        let err = sessions
            .create(&PostParams::default(), &long_name)
            .await
            .expect_err("61 characters");
        assert!(err.to_string().contains("at most 60 characters"), "{err}");

        let blueprints: Api<AgentBlueprint> = Api::namespaced(client.clone(), &ns);
        let bad: AgentBlueprint = serde_json::from_value(json!({
            "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentBlueprint",
            "metadata": {"name": "bp"},
            "spec": {"mcpServers": {"gw": {"type": "http", "command": "oops"}}}
        }))
        .unwrap();
        let err = blueprints
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("http server without url");
        assert!(
            err.to_string().contains("an http MCP server needs url"),
            "{err}"
        );
        assert!(
            blueprints
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
    })
    .await;
}
