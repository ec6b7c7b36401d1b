//! What the API server itself saw each operator process do. Every process runs as an API user of its own
//! (impersonated through a kubeconfig of its own), and two API Priority and Fairness FlowSchemas per user count
//! that user's requests in the API server's `apiserver_flowcontrol_dispatched_requests_total`: one for its Lease
//! requests (leader election), one for every write to anything else. A process's own /metrics cannot show what
//! it did not count; these counters are kept by the API server for every request it dispatched.
//!
//! The FlowSchemas and the RBAC binding are cluster-scoped and owned by the test's Namespace, so the garbage
//! collector removes them with it.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::flowcontrol::v1::FlowSchema;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::{eventually, kubeconfig_path, workspace_root};

const MANAGER: &str = "e2e-api-users";
/// Before the built-in schemas that could match these users (global-default 9900, catch-all 10000); the lease
/// schema comes first, so that the writes schema sees every write except the Lease's.
const LEASE_PRECEDENCE: i32 = 50;
const WRITES_PRECEDENCE: i32 = 51;
const PRIORITY_LEVEL: &str = "global-default";

/// The API users of one test's operator processes.
pub struct ApiUsers {
    client: Client,
    namespace: String,
}

/// What the API server dispatched for one user. `None`: no request of that kind at all (the sample is absent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dispatched {
    pub lease: Option<f64>,
    pub writes: Option<f64>,
}

impl ApiUsers {
    /// Creates, for each identity, its API user (bound to cluster-admin), its kubeconfig and its FlowSchemas, and
    /// waits until the API server has taken the FlowSchemas in (their Dangling condition is False).
    pub async fn create(client: &Client, namespace: &str, identities: &[&str]) -> ApiUsers {
        let users = ApiUsers {
            client: client.clone(),
            namespace: namespace.into(),
        };
        let owner = users.owner().await;
        let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
        let name = format!("e2e-{namespace}-operators");
        let subjects: Vec<_> = identities
            .iter()
            .map(|id| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": users.user(id)}))
            .collect();
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "ownerReferences": [owner]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": subjects,
        });
        bindings
            .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(binding))
            .await
            .unwrap_or_else(|e| panic!("ClusterRoleBinding {name}: {e}"));

        let schemas: Api<FlowSchema> = Api::all(client.clone());
        for id in identities {
            users.write_kubeconfig(id);
            let user = json!([{"kind": "User", "user": {"name": users.user(id)}}]);
            let lease = json!([{
                "verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "namespaces": ["*"],
            }]);
            let writes = json!([{
                "verbs": ["create", "update", "patch", "delete", "deletecollection"],
                "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true,
            }]);
            for (kind, precedence, rules) in [
                ("lease", LEASE_PRECEDENCE, lease),
                ("writes", WRITES_PRECEDENCE, writes),
            ] {
                let name = users.schema(id, kind);
                let schema = json!({
                    "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
                    "metadata": {"name": name, "ownerReferences": [owner]},
                    "spec": {
                        "priorityLevelConfiguration": {"name": PRIORITY_LEVEL},
                        "matchingPrecedence": precedence,
                        "distinguisherMethod": {"type": "ByUser"},
                        "rules": [{"subjects": user, "resourceRules": rules}],
                    },
                });
                schemas
                    .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(schema))
                    .await
                    .unwrap_or_else(|e| panic!("FlowSchema {name}: {e}"));
            }
        }
        for id in identities {
            for kind in ["lease", "writes"] {
                let name = users.schema(id, kind);
                eventually(
                    &format!("FlowSchema {name} taken in by the API server"),
                    Duration::from_secs(30),
                    || async {
                        let s = schemas.get(&name).await.ok()?;
                        let conditions = s.status?.conditions?;
                        conditions
                            .iter()
                            .any(|c| {
                                c.type_.as_deref() == Some("Dangling")
                                    && c.status.as_deref() == Some("False")
                            })
                            .then_some(())
                    },
                )
                .await;
            }
        }
        users
    }

    /// The API user of the process with `identity`.
    pub fn user(&self, identity: &str) -> String {
        format!("e2e-operator:{}:{identity}", self.namespace)
    }

    /// The kubeconfig that makes a process act as `identity`'s user.
    pub fn kubeconfig(&self, identity: &str) -> PathBuf {
        workspace_root().join(format!(
            "target/e2e-logs/kubeconfig-{}-{identity}",
            self.namespace
        ))
    }

    /// What the API server has dispatched so far for `identity`'s user.
    pub async fn dispatched(&self, identity: &str) -> Dispatched {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = self
            .client
            .request_text(req)
            .await
            .expect("the API server's /metrics");
        let sample = |kind: &str| {
            let schema = format!("flow_schema=\"{}\"", self.schema(identity, kind));
            text.lines()
                .filter(|l| l.starts_with("apiserver_flowcontrol_dispatched_requests_total{"))
                .filter(|l| l.contains(&schema))
                .map(|l| {
                    l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or_else(|| panic!("unreadable sample: {l}"))
                })
                .reduce(|a, b| a + b)
        };
        Dispatched {
            lease: sample("lease"),
            writes: sample("writes"),
        }
    }

    fn schema(&self, identity: &str, kind: &str) -> String {
        format!("e2e-{}-{identity}-{kind}", self.namespace)
    }

    async fn owner(&self) -> serde_json::Value {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = namespaces
            .get(&self.namespace)
            .await
            .expect("the test namespace");
        json!({"apiVersion": "v1", "kind": "Namespace", "name": ns.name_any(), "uid": ns.uid().unwrap()})
    }

    fn write_kubeconfig(&self, identity: &str) {
        let mut config =
            Kubeconfig::read_from(kubeconfig_path()).expect("the cluster's kubeconfig");
        for named in &mut config.auth_infos {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.impersonate = Some(self.user(identity));
                auth.impersonate_groups = Some(vec!["e2e:agent-operators".into()]);
            }
        }
        let path = self.kubeconfig(identity);
        std::fs::create_dir_all(path.parent().unwrap()).expect("log folder");
        // JSON is YAML: kube reads it as a kubeconfig.
        std::fs::write(&path, serde_json::to_vec(&config).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
