//! A session's persistent workspace: one PersistentVolumeClaim per session whose blueprint asks for it, mounted
//! in every job's Pod (so an agent's files and its CLI's transcripts survive from one job to the next) and owned
//! by the session, so that the garbage collector deletes it with the session.

use crds::{AgentSession, WorkspaceSpec, labels};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

/// The claim of session `session` (session names are at most 60 characters, so this stays a valid name).
pub fn workspace_claim_name(session: &str) -> String {
    format!("{session}-workspace")
}

/// The claim for `session` as the blueprint describes it.
pub fn build_claim(session: &AgentSession, spec: &WorkspaceSpec) -> PersistentVolumeClaim {
    let name = session.name_any();
    let owner = OwnerReference {
        // No blockOwnerDeletion: that would need update rights on agentsessions/finalizers, and nothing waits on
        // the claim when the session goes.
        block_owner_deletion: None,
        ..session
            .controller_owner_ref(&())
            .expect("a stored session has a name and uid")
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(workspace_claim_name(&name)),
            namespace: session.namespace(),
            labels: Some(
                [
                    (labels::SESSION.to_string(), name),
                    (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), spec.size.clone())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// What an existing claim of the workspace's name means for the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    /// The session's own claim.
    Ours,
    /// A claim of an earlier session of the same name, on its way out: wait for it to go.
    Leaving,
    /// Somebody else's claim: the job cannot use it.
    Foreign,
}

pub fn judge(existing: &PersistentVolumeClaim, session: &AgentSession) -> Existing {
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == session.metadata.uid.as_ref());
    if ours {
        Existing::Ours
    } else if existing.metadata.deletion_timestamp.is_some()
        || existing
            .owner_references()
            .iter()
            .any(|o| o.kind == "AgentSession")
    {
        // Owned by a session that is not this one: an earlier session of the same name, which the garbage
        // collector is removing with its claim.
        Existing::Leaving
    } else {
        Existing::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    const SESSION: &str = r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {name: s1, namespace: ns, uid: u-s1}
spec: {blueprint: coder}
"#;

    #[test]
    fn one_claim_per_session_owned_by_it() {
        let session: AgentSession = yaml(SESSION);
        let spec: WorkspaceSpec = yaml("{size: 2Gi, storageClassName: fast}");
        let claim = build_claim(&session, &spec);
        assert_eq!(claim.metadata.name.as_deref(), Some("s1-workspace"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some("ns"));
        let owner = &claim.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("AgentSession", "u-s1")
        );
        assert_eq!(owner.block_owner_deletion, None);
        let spec = claim.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "2Gi"
        );
        assert_eq!(
            judge(&build_claim(&session, &yaml("{size: 1Gi}")), &session),
            Existing::Ours
        );
    }

    #[test]
    fn claims_of_others_are_told_apart() {
        let session: AgentSession = yaml(SESSION);
        let mut earlier: AgentSession = yaml(SESSION);
        earlier.metadata.uid = Some("u-old".into());
        let old_claim = build_claim(&earlier, &yaml("{size: 1Gi}"));
        assert_eq!(judge(&old_claim, &session), Existing::Leaving);
        let foreign: PersistentVolumeClaim = yaml("metadata: {name: s1-workspace, namespace: ns}");
        assert_eq!(judge(&foreign, &session), Existing::Foreign);
    }
}
