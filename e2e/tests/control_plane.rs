//! Proves the local control plane is a real Kubernetes: CRDs, the scheduler and kwok, ServiceAccount tokens,
//! RBAC, and the garbage collector; and that the process node leaves the cluster as it found it. Each test runs in
//! its own namespace.

use std::time::Duration;

use e2e::local_agents::ProcessNode;
use e2e::procnode::STORAGE_CLASS;
use e2e::{eventually, wait_for, with_temp_ns};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::conditions;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The annotation that makes a StorageClass the cluster's default.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

fn pod_phase(phase: &'static str) -> impl Fn(Option<&Pod>) -> bool {
    move |p| p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some(phase)
}

fn pod(name: &str, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/none:1"}], "restartPolicy": "Never"}
    }))
    .expect("valid Pod")
}

#[tokio::test]
async fn custom_resource_is_established_created_and_listed_by_label() {
    with_temp_ns("crd", |client, ns| async move {
        // Cluster-scoped and shared by every run: applying it again is a no-op.
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.e2e.agentorchestrator.dev"},
            "spec": {
                "group": "e2e.agentorchestrator.dev",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}}
                    }}}
                }]
            }
        }))
        .unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.patch(crd.name_any().as_str(), &PatchParams::apply("e2e").force(), &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        wait_for(&crds, &crd.name_any(), TIMEOUT, conditions::is_crd_established()).await;

        let gvk = GroupVersionKind::gvk("e2e.agentorchestrator.dev", "v1", "Widget");
        let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
        for (name, colour, size) in [("red-one", "red", 1), ("blue-one", "blue", 2), ("red-two", "red", 3)] {
            let w: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "e2e.agentorchestrator.dev/v1", "kind": "Widget",
                "metadata": {"name": name, "labels": {"colour": colour}},
                "spec": {"size": size}
            }))
            .unwrap();
            // Discovery of a just-established CRD can lag by a moment: retry the first create until it is served.
            eventually("Widget create", TIMEOUT, || async {
                match widgets.create(&PostParams::default(), &w).await {
                    Ok(_) => Some(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => None,
                    Err(e) => panic!("create widget {name}: {e}"),
                }
            })
            .await;
        }
        let back = widgets.get("blue-one").await.expect("read back");
        assert_eq!(back.data["spec"]["size"], 2);

        let red = widgets.list(&ListParams::default().labels("colour=red")).await.unwrap();
        let mut names: Vec<_> = red.items.iter().map(|w| w.name_any()).collect();
        names.sort();
        assert_eq!(names, ["red-one", "red-two"]);

        // The schema is enforced: a size below the minimum is refused.
        let bad: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "e2e.agentorchestrator.dev/v1", "kind": "Widget",
            "metadata": {"name": "bad"}, "spec": {"size": 0}
        }))
        .unwrap();
        let err = widgets.create(&PostParams::default(), &bad).await.expect_err("schema refuses size 0");
        assert!(err.to_string().contains("spec.size"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn pods_are_scheduled_to_the_kwok_node_and_complete_as_asked() {
    with_temp_ns("pods", |client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let ok = pod("succeeds", json!({
            "sim.agentorchestrator.dev/outcome": "succeed",
            "sim.agentorchestrator.dev/after": "500ms",
            "sim.agentorchestrator.dev/message": "all good",
        }));
        let bad = pod("fails", json!({
            "sim.agentorchestrator.dev/outcome": "fail",
            "sim.agentorchestrator.dev/exit-code": "42",
        }));
        let held = pod("held", json!({}));
        for p in [&ok, &bad, &held] {
            pods.create(&PostParams::default(), p).await.expect("create pod");
        }

        let done = wait_for(&pods, "succeeds", TIMEOUT, pod_phase("Succeeded")).await.unwrap();
        assert_eq!(done.spec.unwrap().node_name.as_deref(), Some("kwok-node-0"));
        let terminated = done.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.message.as_deref(), Some("all good"));

        let failed = wait_for(&pods, "fails", TIMEOUT, pod_phase("Failed"))
        .await
        .unwrap();
        let terminated = failed.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!(terminated.exit_code, 42);

        // Without an outcome annotation a Pod runs until the test acts on it.
        let running = wait_for(&pods, "held", TIMEOUT, pod_phase("Running"))
        .await
        .unwrap();
        assert_eq!(running.spec.unwrap().node_name.as_deref(), Some("kwok-node-0"));
        pods.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"sim.agentorchestrator.dev/outcome": "succeed"}}})),
        )
        .await
        .unwrap();
        wait_for(&pods, "held", TIMEOUT, pod_phase("Succeeded")).await;
    })
    .await;
}

#[tokio::test]
async fn pod_bound_token_passes_token_review_for_its_audience_only() {
    with_temp_ns("token", |client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let p = pods.create(&PostParams::default(), &pod("agent", json!({}))).await.unwrap();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let request: TokenRequest = serde_json::from_value(json!({
            "spec": {
                "audiences": ["agent-gateway"],
                "expirationSeconds": 600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "agent", "uid": p.uid()}
            }
        }))
        .unwrap();
        let token = accounts
            .create_token_request("default", &PostParams::default(), &request)
            .await
            .expect("TokenRequest")
            .status
            .and_then(|s| s.token)
            .expect("token issued");

        let review = |audience: &str| -> TokenReview {
            serde_json::from_value(json!({"spec": {"token": token, "audiences": [audience]}})).unwrap()
        };
        let reviews: Api<TokenReview> = Api::all(client.clone());
        let accepted = reviews.create(&PostParams::default(), &review("agent-gateway")).await.unwrap().status.unwrap();
        assert_eq!(accepted.authenticated, Some(true), "{accepted:?}");
        let user = accepted.user.unwrap();
        assert_eq!(user.username.as_deref(), Some(format!("system:serviceaccount:{ns}:default").as_str()));
        let extra = user.extra.unwrap_or_default();
        assert_eq!(extra.get("authentication.kubernetes.io/pod-name"), Some(&vec!["agent".to_string()]));

        let refused = reviews.create(&PostParams::default(), &review("someone-else")).await.unwrap().status.unwrap();
        assert_ne!(refused.authenticated, Some(true), "{refused:?}");
    })
    .await;
}

async fn may_list_configmaps(client: &Client, ns: &str, user: &str) -> bool {
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some("list".into()),
                resource: Some("configmaps".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    reviews
        .create(&PostParams::default(), &sar)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

#[tokio::test]
async fn rbac_denies_a_service_account_until_a_role_binding_allows_it() {
    with_temp_ns("rbac", |client, ns| async move {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("reader".into());
        accounts.create(&PostParams::default(), &sa).await.unwrap();
        let user = format!("system:serviceaccount:{ns}:reader");
        assert!(
            !may_list_configmaps(&client, &ns, &user).await,
            "a ServiceAccount with no role is denied"
        );

        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        let mut role = Role::default();
        role.metadata.name = Some("configmap-reader".into());
        role.rules = Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]);
        roles.create(&PostParams::default(), &role).await.unwrap();
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        let mut binding = RoleBinding::default();
        binding.metadata.name = Some("reader".into());
        binding.role_ref = RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "configmap-reader".into(),
        };
        binding.subjects = Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]);
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();

        // The authorizer reads RBAC from an informer: the binding takes effect within moments, not at once.
        eventually("RoleBinding to take effect", TIMEOUT, || async {
            may_list_configmaps(&client, &ns, &user).await.then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    with_temp_ns("gc", |client, ns| async move {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let mut owner = ConfigMap::default();
        owner.metadata.name = Some("owner".into());
        let owner = maps.create(&PostParams::default(), &owner).await.unwrap();
        let mut child = ConfigMap::default();
        child.metadata.name = Some("child".into());
        child.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.uid().unwrap(),
            ..Default::default()
        }]);
        maps.create(&PostParams::default(), &child).await.unwrap();

        maps.delete("owner", &DeleteParams::default())
            .await
            .unwrap();
        wait_for(&maps, "child", TIMEOUT, |c: Option<&ConfigMap>| c.is_none()).await;
    })
    .await;
}

/// The fields of `class` that field manager `manager` owns (its managedFields entry), `None` when it has none.
fn owned_by(class: &StorageClass, manager: &str) -> Option<serde_json::Value> {
    class
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|f| f.manager.as_deref() == Some(manager))
        .map(|f| {
            f.fields_v1
                .as_ref()
                .map(|v| v.0.clone())
                .unwrap_or_default()
        })
}

/// The process node (the kubelet of agent Pods) started with `--default-storage-class` marks its StorageClass the
/// cluster's default, and gives that mark back when it stops: afterwards it owns no field of the class. (Other
/// tests' process nodes, running at the same time, may mark it too, so the annotation itself may stay.)
#[tokio::test]
async fn a_process_node_gives_back_its_default_storage_class_mark_when_it_stops() {
    with_temp_ns("pn-default", |client, ns| async move {
        let classes: Api<StorageClass> = Api::all(client.clone());
        let node = ProcessNode::start_with(&client, &ns, &["--default-storage-class"]).await;
        let manager = format!("process-node-default-{}", node.name);
        let class = classes
            .get(STORAGE_CLASS)
            .await
            .expect("the process node's StorageClass");
        assert_eq!(
            class.annotations().get(DEFAULT_CLASS).map(String::as_str),
            Some("true"),
            "the class is the default while the node runs"
        );
        let mark = owned_by(&class, &manager)
            .unwrap_or_else(|| panic!("{manager} owns no field of the class"));
        assert!(
            mark["f:metadata"]["f:annotations"][format!("f:{DEFAULT_CLASS}")].is_object(),
            "{manager} owns: {mark}"
        );

        drop(node); // SIGTERM, and the wait for its exit
        let class = classes
            .get(STORAGE_CLASS)
            .await
            .expect("the process node's StorageClass");
        assert_eq!(
            owned_by(&class, &manager),
            None,
            "the stopped node still owns fields of the class (its default mark: {:?})",
            class.annotations().get(DEFAULT_CLASS)
        );
    })
    .await;
}
