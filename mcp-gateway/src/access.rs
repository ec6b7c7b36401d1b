//! What a person may do through the gateway: each tool needs RBAC verbs on the agentorchestrator.dev resources of
//! the caller's namespace, and each call asks the API server (SubjectAccessReview) whether the person's identity
//! has them. Agents are not checked here: their reach is their tree (reach.rs). Answers are cached briefly, so a
//! client polling a status does not turn every call into reviews.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;

use crate::auth::Person;

/// The API group every right below is in.
pub const GROUP: &str = "agentorchestrator.dev";
/// How long a SubjectAccessReview answer is reused: a revoked RoleBinding takes effect within this.
pub const ANSWER_TTL: Duration = Duration::from_secs(10);
const MAX_CACHED_ANSWERS: usize = 4096;

/// One RBAC right: a verb on a resource of GROUP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Right {
    pub verb: &'static str,
    pub resource: &'static str,
}

const fn right(verb: &'static str, resource: &'static str) -> Right {
    Right { verb, resource }
}

const READ: &[Right] = &[
    right("get", "agentsessions"),
    right("list", "agentsessions"),
    right("get", "agentjobs"),
    right("list", "agentjobs"),
];
const LIST_BLUEPRINTS: &[Right] = &[right("list", "agentblueprints")];
const CREATE_JOBS: &[Right] = &[right("create", "agentjobs")];
const DELETE_JOBS: &[Right] = &[right("delete", "agentjobs")];

/// The rights a person needs for each tool, by tool name; None for a tool not listed (a test keeps every served
/// tool listed).
pub fn rights_of(tool: &str) -> Option<&'static [Right]> {
    Some(match tool {
        "list_agent_sessions" | "get_agent_session_status" | "get_agent_session_result" => READ,
        "list_agent_blueprints" => LIST_BLUEPRINTS,
        "start_agent_session" | "resume_agent_session" => CREATE_JOBS,
        "stop_agent_session" | "delete_all_agent_sessions" => DELETE_JOBS,
        _ => return None,
    })
}

/// The rights as docs and messages name them: "get and list on agentsessions and agentjobs".
pub fn describe(rights: &[Right]) -> String {
    let mut verbs: Vec<&str> = Vec::new();
    let mut resources: Vec<&str> = Vec::new();
    for r in rights {
        if !verbs.contains(&r.verb) {
            verbs.push(r.verb);
        }
        if !resources.contains(&r.resource) {
            resources.push(r.resource);
        }
    }
    format!("{} on {}", verbs.join(" and "), resources.join(" and "))
}

/// A right the person lacks: the text is the tool error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{user}' may not {verb} {resource}.{GROUP} in namespace '{namespace}' (RBAC){why}. {tool} needs {needs} \
     there: ask for a Role granting them (bound to you in '{namespace}'), or name another namespace with \
     X-Agent-Namespace."
)]
pub struct Denied {
    pub user: String,
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: String,
    pub tool: String,
    pub needs: String,
    /// The authorizer's reason, when it gives one (": <reason>").
    pub why: String,
}

/// Why a check could not be made (the API server failed the review).
#[derive(Debug, thiserror::Error)]
#[error("authorizing the call (SubjectAccessReview) failed: {0}")]
pub struct Unavailable(pub String);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Question {
    person: Person,
    namespace: String,
    right: Right,
}

/// Allowed, or denied with the authorizer's reason.
type Answer = Result<(), String>;

pub struct Access {
    client: Client,
    answers: Mutex<HashMap<Question, (Instant, Answer)>>,
}

impl Access {
    pub fn new(client: Client) -> Self {
        Access {
            client,
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `person` holds every right `tool` needs in `namespace`; the first missing one (in the order of
    /// rights_of) is the refusal.
    pub async fn authorize(
        &self,
        person: &Person,
        namespace: &str,
        tool: &str,
    ) -> Result<Result<(), Denied>, Unavailable> {
        let Some(rights) = rights_of(tool) else {
            // Unlisted means unknown: refuse rather than let a new tool through unchecked.
            return Ok(Err(Denied {
                user: person.username.clone(),
                verb: "use",
                resource: "tools",
                namespace: namespace.into(),
                tool: tool.into(),
                needs: "a right the gateway does not know".into(),
                why: String::new(),
            }));
        };
        let answers =
            futures::future::join_all(rights.iter().map(|r| self.answer(person, namespace, *r)))
                .await;
        for (right, answer) in rights.iter().zip(answers) {
            if let Err(why) = answer? {
                return Ok(Err(Denied {
                    user: person.username.clone(),
                    verb: right.verb,
                    resource: right.resource,
                    namespace: namespace.into(),
                    tool: tool.into(),
                    needs: describe(rights),
                    why: if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    },
                }));
            }
        }
        Ok(Ok(()))
    }

    async fn answer(
        &self,
        person: &Person,
        namespace: &str,
        right: Right,
    ) -> Result<Answer, Unavailable> {
        let question = Question {
            person: person.clone(),
            namespace: namespace.into(),
            right,
        };
        let now = Instant::now();
        if let Some((expires, answer)) = self.answers.lock().expect("answer cache").get(&question)
            && *expires > now
        {
            return Ok(answer.clone());
        }
        let answer = self.review(&question).await?;
        let mut answers = self.answers.lock().expect("answer cache");
        if answers.len() >= MAX_CACHED_ANSWERS {
            answers.retain(|_, (expires, _)| *expires > now);
            if answers.len() >= MAX_CACHED_ANSWERS {
                answers.clear();
            }
        }
        answers.insert(question, (now + ANSWER_TTL, answer.clone()));
        Ok(answer)
    }

    async fn review(&self, q: &Question) -> Result<Answer, Unavailable> {
        let review = subject_access_review(&q.person, &q.namespace, q.right);
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let reviewed = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Unavailable(crate::error::kube_message(&e)))?;
        let status = reviewed.status.unwrap_or_default();
        Ok(if status.allowed {
            Ok(())
        } else {
            Err(status.reason.unwrap_or_default())
        })
    }
}

/// The review of one right for the person's whole identity (user, uid, groups, extra), as RBAC sees it.
pub fn subject_access_review(
    person: &Person,
    namespace: &str,
    right: Right,
) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(person.username.clone()),
            uid: person.uid.clone(),
            groups: Some(person.groups.clone()),
            extra: Some(person.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(right.verb.into()),
                group: Some(GROUP.into()),
                resource: Some(right.resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_needs_the_documented_rights() {
        assert_eq!(
            describe(rights_of("get_agent_session_status").unwrap()),
            "get and list on agentsessions and agentjobs"
        );
        assert_eq!(
            describe(rights_of("list_agent_blueprints").unwrap()),
            "list on agentblueprints"
        );
        assert_eq!(
            describe(rights_of("resume_agent_session").unwrap()),
            "create on agentjobs"
        );
        assert_eq!(
            describe(rights_of("delete_all_agent_sessions").unwrap()),
            "delete on agentjobs"
        );
        assert_eq!(rights_of("some_new_tool"), None);
    }

    #[test]
    fn every_served_tool_lists_its_rights() {
        for tool in crate::tools::Gateway::served_tools() {
            assert!(
                rights_of(&tool.name).is_some(),
                "{} has no rights in access.rs",
                tool.name
            );
        }
    }

    #[test]
    fn the_review_carries_the_whole_identity_and_the_namespace() {
        let person = Person {
            username: "alice".into(),
            uid: Some("u1".into()),
            groups: vec!["devs".into()],
            extra: [("scopes".to_string(), vec!["a".to_string()])].into(),
        };
        let sar = subject_access_review(&person, "team-a", right("create", "agentjobs"));
        let spec = sar.spec;
        assert_eq!(spec.user.as_deref(), Some("alice"));
        assert_eq!(spec.uid.as_deref(), Some("u1"));
        assert_eq!(spec.groups, Some(vec!["devs".to_string()]));
        assert_eq!(spec.extra.unwrap()["scopes"], ["a"]);
        let attrs = spec.resource_attributes.unwrap();
        assert_eq!(
            (
                attrs.namespace.as_deref(),
                attrs.verb.as_deref(),
                attrs.group.as_deref(),
                attrs.resource.as_deref()
            ),
            (
                Some("team-a"),
                Some("create"),
                Some(GROUP),
                Some("agentjobs")
            )
        );
    }

    #[test]
    fn a_denial_names_verb_resource_namespace_and_what_the_tool_needs() {
        let denied = Denied {
            user: "system:serviceaccount:ns:bob".into(),
            verb: "create",
            resource: "agentjobs",
            namespace: "ns".into(),
            tool: "start_agent_session".into(),
            needs: describe(CREATE_JOBS),
            why: String::new(),
        };
        assert_eq!(
            denied.to_string(),
            "'system:serviceaccount:ns:bob' may not create agentjobs.agentorchestrator.dev in namespace 'ns' (RBAC). \
             start_agent_session needs create on agentjobs there: ask for a Role granting them (bound to you in \
             'ns'), or name another namespace with X-Agent-Namespace."
        );
    }
}
