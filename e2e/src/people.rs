//! People's identities for e2e tests: ServiceAccount tokens as `kubectl create token NAME` gives them (the API
//! server's audience, bound to no Pod) and Roles on the agentorchestrator.dev resources bound to them.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::eventually;

const TIMEOUT: Duration = Duration::from_secs(30);
const GROUP: &str = "agentorchestrator.dev";

/// A ServiceAccount and a token of it from the TokenRequest API: no audience given (so the API server's own, as
/// `kubectl create token NAME`), bound to no Pod.
pub async fn person_token(client: &Client, ns: &str, name: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap_or_else(|e| panic!("create ServiceAccount {name}: {e}"));
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![]),
            expiration_seconds: Some(600),
            bound_object_ref: None,
        }),
        ..Default::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {name}: {e}"))
        .status
        .expect("token status")
        .token
        .expect("a token")
}

/// A Role with the verbs every tool needs (as docs/mcp-tools.md lists them), bound to ServiceAccount `who`.
pub async fn grant_agent_user(client: &Client, ns: &str, who: &str) {
    grant(
        client,
        ns,
        who,
        "agent-user",
        &[
            (&["agentsessions"], &["get", "list"]),
            (&["agentjobs"], &["get", "list", "create", "delete"]),
            (&["agentblueprints"], &["list"]),
        ],
    )
    .await;
}

/// A Role `role` with `rules` (resources of agentorchestrator.dev, verbs) bound to ServiceAccount `who`; returns once
/// the authorizer applies it.
pub async fn grant(client: &Client, ns: &str, who: &str, role: &str, rules: &[(&[&str], &[&str])]) {
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![GROUP.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    let first_verb = rules[0].1[0];
    let first_resource = rules[0].0[0];
    let role_object = Role {
        metadata: ObjectMeta {
            name: Some(role.into()),
            ..Default::default()
        },
        rules: Some(rules.iter().map(|(r, v)| rule(r, v)).collect()),
    };
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role_object)
        .await
        .expect("create Role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{role}-{who}")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: who.into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
    // The authorizer learns of new bindings through a watch: wait until it is in effect, so the gateway's first
    // (cached) answer is the final one.
    let user = format!("system:serviceaccount:{ns}:{who}");
    eventually(
        &format!("{user} may {first_verb} {first_resource}"),
        TIMEOUT,
        || {
            let (client, ns, user) = (client.clone(), ns.to_string(), user.clone());
            async move {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(user),
                        resource_attributes: Some(ResourceAttributes {
                            namespace: Some(ns),
                            verb: Some(first_verb.into()),
                            group: Some(GROUP.into()),
                            resource: Some(first_resource.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let answer = Api::<SubjectAccessReview>::all(client)
                    .create(&PostParams::default(), &review)
                    .await
                    .ok()?;
                answer.status.is_some_and(|s| s.allowed).then_some(())
            }
        },
    )
    .await;
}
