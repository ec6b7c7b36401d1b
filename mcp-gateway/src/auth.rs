//! Who is calling. In `token` mode (the default) the caller proves its identity with a bearer token that the API
//! server reviews (TokenReview):
//! - an agent Pod sends the projected ServiceAccount token of its Pod (audience
//!   crds::contract::GATEWAY_TOKEN_AUDIENCE): the review names the Pod, the Pod's labels name its session and job,
//!   and `X-Agent-Session-Name` is only a claim that must agree;
//! - a person (or a ServiceAccount outside an agent Pod) sends its own token, with the API server's audience (what
//!   `kubectl create token` gives) or the gateway's: it has no session, names its namespace with
//!   `X-Agent-Namespace`, and each tool call is authorized against RBAC (access.rs).
//!
//! A token bound to a Pod is always an agent's, never a person's. In `header` mode (development only) the session
//! header is trusted as is. `Authenticator::authenticate` is the one way from a request's headers to a caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};
use thiserror::Error;
use tokio::time::Instant;

use crate::reach::CallerKind;
use crate::store::Stores;
use crate::validate;

pub const SESSION_HEADER: &str = "x-agent-session-name";
pub const TAGS_HEADER: &str = "x-agent-tags";
/// The namespace a person's call works in (else the gateway's --namespace). An agent's is its Pod's.
pub const NAMESPACE_HEADER: &str = "x-agent-namespace";

/// How long a TokenReview verdict is reused. Short, so a deleted Pod's token stops working soon; the Pod itself
/// is re-checked against the cache on every call anyway.
const ACCEPTED_TTL: Duration = Duration::from_secs(30);
/// Rejections are remembered briefly so a misbehaving client cannot turn every request into a TokenReview.
const REJECTED_TTL: Duration = Duration::from_secs(5);
const MAX_CACHED_VERDICTS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Verify the caller's Pod token with TokenReview.
    Token,
    /// Trust X-Agent-Session-Name alone: for local development only.
    Header,
}

/// A person's (or a non-agent ServiceAccount's) identity as TokenReview gave it: what SubjectAccessReview asks about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Person {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// The caller of a request, put into the request extensions by the middleware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's own session: parent of what it creates.
    pub session: Option<String>,
    /// Where the caller's work goes: its Pod's namespace, or the gateway's --namespace.
    pub namespace: String,
    /// The AgentJob whose Pod made the call (verified callers only).
    pub job: Option<String>,
    /// True when the identity comes from a verified token.
    pub verified: bool,
    /// Whether the request carried `X-Agent-Session-Name` (which, verified, agreed with the token).
    pub claimed: bool,
    /// Set when the token is a person's: every tool call is then authorized for this identity (access.rs).
    pub person: Option<Person>,
}

impl Caller {
    /// The `by` label of mcp_gateway_callers_total: an agent Pod's token, a person's token, or header mode.
    pub fn identified_by(&self) -> &'static str {
        match (&self.person, self.verified) {
            (Some(_), _) => "person",
            (None, true) => "token",
            (None, false) => "header",
        }
    }

    /// What kind of caller this is, which decides its reach (see reach.rs).
    pub fn kind(&self) -> CallerKind<'_> {
        match (&self.person, self.session.as_deref()) {
            (Some(_), _) => CallerKind::Person,
            (None, Some(session)) => CallerKind::Agent { session },
            (None, None) => CallerKind::Developer,
        }
    }
}

/// Why a request was refused. The text is shown to the caller.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "no bearer token: send 'Authorization: Bearer <token>' (an agent Pod its projected ServiceAccount token, \
         audience {aud}; a person its own Kubernetes token, such as one from 'kubectl create token NAME')",
        aud = crds::contract::GATEWAY_TOKEN_AUDIENCE
    )]
    MissingToken,
    #[error("the bearer token was not accepted: {0}")]
    InvalidToken(String),
    #[error("the token does not belong to an agent Pod: {0}")]
    NotAnAgentPod(String),
    #[error(
        "X-Agent-Session-Name '{claimed}' does not match the caller's session '{actual}' (proven by its Pod's token)"
    )]
    SessionMismatch { claimed: String, actual: String },
    #[error(
        "X-Agent-Session-Name is for agent Pods, and this token is {0}'s, a person's (not bound to an agent Pod): a \
         person has no session of its own and starts root sessions. Send the request without X-Agent-Session-Name."
    )]
    PersonWithSession(String),
    #[error(
        "X-Agent-Namespace '{claimed}' is not the caller's namespace '{actual}' (an agent works in its Pod's \
         namespace)"
    )]
    NamespaceMismatch { claimed: String, actual: String },
    #[error("{0}")]
    BadHeader(String),
    #[error("the caller could not be verified right now: {0}")]
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Refusal::MissingToken | Refusal::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Refusal::NotAnAgentPod(_)
            | Refusal::SessionMismatch { .. }
            | Refusal::PersonWithSession(_)
            | Refusal::NamespaceMismatch { .. } => StatusCode::FORBIDDEN,
            Refusal::BadHeader(_) => StatusCode::BAD_REQUEST,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Label of the refusal metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::InvalidToken(_) => "invalid_token",
            Refusal::NotAnAgentPod(_) => "not_an_agent_pod",
            Refusal::SessionMismatch { .. } => "session_mismatch",
            Refusal::PersonWithSession(_) => "person_session_header",
            Refusal::NamespaceMismatch { .. } => "namespace_mismatch",
            Refusal::BadHeader(_) => "bad_header",
            Refusal::Unavailable(_) => "unavailable",
        }
    }
}

/// What TokenReview says about a token: the Pod it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundPod {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

/// Whose token it is, as TokenReview says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOwner {
    /// An agent Pod (or a Pod that claims to be one: its labels decide).
    Pod(BoundPod),
    /// A person or a ServiceAccount outside any Pod.
    Person(Person),
}

/// The audience a TokenReview asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// crds::contract::GATEWAY_TOKEN_AUDIENCE: agent Pods' projected tokens (and people who mint one for it).
    Gateway,
    /// The API server's own (no audience in the review): people's everyday tokens.
    ApiServer,
}

/// A TokenReview outcome and when it stops being trusted.
type Verdict = (Instant, Result<TokenOwner, Refusal>);

pub struct Authenticator {
    mode: AuthMode,
    default_namespace: String,
    client: Client,
    stores: Stores,
    verdicts: Mutex<HashMap<String, Verdict>>,
    /// One TokenReview at a time per token: concurrent first calls of one agent wait for its verdict instead of
    /// each asking the API server.
    reviewing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Authenticator {
    pub fn new(
        mode: AuthMode,
        default_namespace: String,
        client: Client,
        stores: Stores,
    ) -> Arc<Self> {
        Arc::new(Authenticator {
            mode,
            default_namespace,
            client,
            stores,
            verdicts: Mutex::new(HashMap::new()),
            reviewing: Mutex::new(HashMap::new()),
        })
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let claimed = claimed_session(headers)?;
        match self.mode {
            // As in token mode for a person: X-Agent-Namespace names the namespace, else --namespace.
            AuthMode::Header => Ok(Caller {
                claimed: claimed.is_some(),
                session: claimed,
                namespace: claimed_namespace(headers)?
                    .unwrap_or_else(|| self.default_namespace.clone()),
                job: None,
                verified: false,
                person: None,
            }),
            AuthMode::Token => {
                let token = bearer_token(headers).ok_or(Refusal::MissingToken)?;
                let namespace = claimed_namespace(headers)?;
                match self.review(token).await? {
                    TokenOwner::Pod(pod) => {
                        let (session, job) = self.agent_of(&pod).await?;
                        if let Some(claimed) = claimed.as_ref().filter(|c| **c != session) {
                            return Err(Refusal::SessionMismatch {
                                claimed: claimed.clone(),
                                actual: session,
                            });
                        }
                        if let Some(ns) = namespace.filter(|ns| *ns != pod.namespace) {
                            return Err(Refusal::NamespaceMismatch {
                                claimed: ns,
                                actual: pod.namespace,
                            });
                        }
                        Ok(Caller {
                            claimed: claimed.is_some(),
                            session: Some(session),
                            namespace: pod.namespace,
                            job,
                            verified: true,
                            person: None,
                        })
                    }
                    TokenOwner::Person(person) => {
                        if claimed.is_some() {
                            return Err(Refusal::PersonWithSession(person.username));
                        }
                        Ok(Caller {
                            claimed: false,
                            session: None,
                            namespace: namespace.unwrap_or_else(|| self.default_namespace.clone()),
                            job: None,
                            verified: true,
                            person: Some(person),
                        })
                    }
                }
            }
        }
    }

    fn cached(&self, token: &str) -> Option<Result<TokenOwner, Refusal>> {
        match self.verdicts.lock().expect("verdict cache lock").get(token) {
            Some((expires, verdict)) if *expires > Instant::now() => Some(verdict.clone()),
            _ => None,
        }
    }

    /// Whose token it is, the verdict cached by token.
    async fn review(&self, token: &str) -> Result<TokenOwner, Refusal> {
        if let Some(verdict) = self.cached(token) {
            return verdict;
        }
        let turn = self
            .reviewing
            .lock()
            .expect("review lock")
            .entry(token.to_string())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        // Whoever went first may have the verdict by now.
        if let Some(verdict) = self.cached(token) {
            self.reviewing.lock().expect("review lock").remove(token);
            return verdict;
        }
        let verdict = self.ask(token).await;
        self.reviewing.lock().expect("review lock").remove(token);
        verdict
    }

    /// TokenReview with the gateway's audience first (agent Pods, every call of theirs), then, for a token not
    /// valid there, with the API server's own audience (people).
    async fn ask(&self, token: &str) -> Result<TokenOwner, Refusal> {
        let now = Instant::now();
        let verdict = match owner(
            &self.token_review(token, Audience::Gateway).await?,
            Audience::Gateway,
        ) {
            Err(Refusal::InvalidToken(for_gateway)) => {
                let reviewed = self.token_review(token, Audience::ApiServer).await?;
                owner(&reviewed, Audience::ApiServer).map_err(|e| match e {
                    Refusal::InvalidToken(for_api) => Refusal::InvalidToken(format!(
                        "{for_api} (for the API server's audience); {for_gateway} (for audience {})",
                        crds::contract::GATEWAY_TOKEN_AUDIENCE
                    )),
                    other => other,
                })
            }
            other => other,
        };
        let ttl = if verdict.is_ok() {
            ACCEPTED_TTL
        } else {
            REJECTED_TTL
        };
        let mut verdicts = self.verdicts.lock().expect("verdict cache lock");
        if verdicts.len() >= MAX_CACHED_VERDICTS {
            verdicts.retain(|_, (expires, _)| *expires > now);
            if verdicts.len() >= MAX_CACHED_VERDICTS {
                verdicts.clear();
            }
        }
        verdicts.insert(token.to_string(), (now + ttl, verdict.clone()));
        verdict
    }

    async fn token_review(&self, token: &str, audience: Audience) -> Result<TokenReview, Refusal> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: match audience {
                    Audience::Gateway => {
                        Some(vec![crds::contract::GATEWAY_TOKEN_AUDIENCE.to_string()])
                    }
                    Audience::ApiServer => None,
                },
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                Refusal::Unavailable(format!(
                    "TokenReview failed: {}",
                    crate::error::kube_message(&e)
                ))
            })
    }

    /// The session and job of an agent Pod, from its labels. The cache is asked first; a Pod created a moment
    /// ago may not be there yet, so a miss falls back to one GET.
    async fn agent_of(&self, pod: &BoundPod) -> Result<(String, Option<String>), Refusal> {
        let meta = match self.stores.pod(&pod.namespace, &pod.name) {
            Some(p) => p.metadata.clone(),
            None => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                api.get_metadata_opt(&pod.name)
                    .await
                    .map_err(|e| {
                        Refusal::Unavailable(format!(
                            "reading Pod: {}",
                            crate::error::kube_message(&e)
                        ))
                    })?
                    .ok_or_else(|| {
                        Refusal::NotAnAgentPod(format!(
                            "Pod {}/{} no longer exists",
                            pod.namespace, pod.name
                        ))
                    })?
                    .metadata
            }
        };
        pod_session(pod, &meta)
    }
}

/// Reads TokenReview's answer about `audience`: authenticated, for that audience; a token bound to a Pod is that
/// Pod's (only with the gateway's audience: a Pod's token never acts as a person), any other is a person's.
pub fn owner(review: &TokenReview, audience: Audience) -> Result<TokenOwner, Refusal> {
    let status = review.status.clone().unwrap_or_default();
    if status.authenticated != Some(true) {
        let why = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "not authenticated".into());
        return Err(Refusal::InvalidToken(why));
    }
    let audience_ok = audience == Audience::ApiServer
        || status.audiences.as_ref().is_none_or(|a| {
            a.iter()
                .any(|a| a == crds::contract::GATEWAY_TOKEN_AUDIENCE)
        });
    if !audience_ok {
        return Err(Refusal::InvalidToken(format!(
            "the token is not for audience {}",
            crds::contract::GATEWAY_TOKEN_AUDIENCE
        )));
    }
    let user = status.user.unwrap_or_default();
    let extra = user.extra.clone().unwrap_or_default();
    let bound_to_pod = extra.contains_key(POD_NAME_EXTRA);
    match (bound_to_pod, audience) {
        (true, Audience::Gateway) => bound_pod(user).map(TokenOwner::Pod),
        (true, Audience::ApiServer) => Err(Refusal::NotAnAgentPod(format!(
            "'{}' sent a token bound to Pod {}, with the API server's audience: a Pod's token is never a \
             person's, and an agent Pod sends its projected token with audience {}",
            user.username.unwrap_or_default(),
            extra[POD_NAME_EXTRA]
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
            crds::contract::GATEWAY_TOKEN_AUDIENCE
        ))),
        (false, _) => Ok(TokenOwner::Person(Person {
            username: user.username.unwrap_or_default(),
            uid: user.uid.filter(|u| !u.is_empty()),
            groups: user.groups.unwrap_or_default(),
            extra,
        })),
    }
}

const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// The Pod a Pod-bound ServiceAccount token was issued for.
fn bound_pod(user: k8s_openapi::api::authentication::v1::UserInfo) -> Result<BoundPod, Refusal> {
    let username = user.username.unwrap_or_default();
    let namespace = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split(':').next())
        .filter(|ns| !ns.is_empty())
        .ok_or_else(|| Refusal::NotAnAgentPod(format!("'{username}' is not a ServiceAccount")))?
        .to_string();
    let extra = user.extra.unwrap_or_default();
    let first = |key: &str| extra.get(key).and_then(|v| v.first()).cloned();
    let name = first(POD_NAME_EXTRA)
        .ok_or_else(|| Refusal::NotAnAgentPod("the token is not bound to a Pod".into()))?;
    Ok(BoundPod {
        namespace,
        name,
        uid: first("authentication.kubernetes.io/pod-uid"),
    })
}

/// The session (and job) an agent Pod works for. The Pod must be the operator's (managed-by label), the one the
/// token was issued for (same UID), and carry the session label.
pub fn pod_session(
    pod: &BoundPod,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(String, Option<String>), Refusal> {
    let id = format!("{}/{}", pod.namespace, pod.name);
    if let (Some(want), Some(have)) = (&pod.uid, &meta.uid)
        && want != have
    {
        return Err(Refusal::NotAnAgentPod(format!(
            "Pod {id} was replaced since the token was issued"
        )));
    }
    let labels = meta.labels.clone().unwrap_or_default();
    if labels.get(crds::labels::MANAGED_BY).map(String::as_str) != Some(crds::labels::MANAGER) {
        return Err(Refusal::NotAnAgentPod(format!(
            "Pod {id} is not managed by {}",
            crds::labels::MANAGER
        )));
    }
    let session = labels.get(crds::labels::SESSION).cloned().ok_or_else(|| {
        Refusal::NotAnAgentPod(format!("Pod {id} has no {} label", crds::labels::SESSION))
    })?;
    Ok((session, labels.get(crds::labels::JOB).cloned()))
}

fn claimed_session(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Refusal::BadHeader("X-Agent-Session-Name is not ASCII".into()))?
        .trim();
    if value.is_empty() {
        return Ok(None);
    }
    validate::session_name("X-Agent-Session-Name", value).map_err(|e| {
        Refusal::BadHeader(format!(
            "X-Agent-Session-Name is not a valid session name: {}",
            e.to_string().trim_start_matches("Error: ")
        ))
    })?;
    Ok(Some(value.to_string()))
}

/// `X-Agent-Namespace`, when sent: a namespace name (a DNS label of at most 63 characters).
fn claimed_namespace(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get(NAMESPACE_HEADER) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Refusal::BadHeader("X-Agent-Namespace is not ASCII".into()))?
        .trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > 63 || !validate::is_dns_label(value) {
        return Err(Refusal::BadHeader(format!(
            "X-Agent-Namespace '{value}' is not a namespace name: lowercase letters, digits and '-', at most 63 \
             characters, starting and ending with a letter or digit"
        )));
    }
    Ok(Some(value.to_string()))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Extends the caller with the request's tags (X-Agent-Tags), for blueprint filtering.
pub fn tags(headers: &HeaderMap) -> Vec<String> {
    crate::domain::parse_tags(headers.get(TAGS_HEADER).and_then(|v| v.to_str().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn review(
        authenticated: bool,
        audiences: &[&str],
        user: &str,
        pod: Option<&str>,
    ) -> TokenReview {
        let mut extra = std::collections::BTreeMap::new();
        if let Some(p) = pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec![p.to_string()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_string(),
                vec!["uid-1".to_string()],
            );
        }
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(authenticated),
                audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
                user: Some(UserInfo {
                    username: Some(user.into()),
                    extra: Some(extra),
                    ..Default::default()
                }),
                error: (!authenticated).then(|| "token expired".to_string()),
            }),
            ..Default::default()
        }
    }

    const AUD: &str = crds::contract::GATEWAY_TOKEN_AUDIENCE;

    #[test]
    fn a_pod_bound_token_names_namespace_pod_and_uid() {
        let pod = owner(
            &review(
                true,
                &[AUD],
                "system:serviceaccount:team-a:default",
                Some("p1"),
            ),
            Audience::Gateway,
        )
        .unwrap();
        assert_eq!(
            pod,
            TokenOwner::Pod(BoundPod {
                namespace: "team-a".into(),
                name: "p1".into(),
                uid: Some("uid-1".into())
            })
        );
    }

    #[test]
    fn unauthenticated_or_foreign_audience_tokens_are_refused() {
        let sa = "system:serviceaccount:ns:default";
        for audience in [Audience::Gateway, Audience::ApiServer] {
            assert!(
                matches!(owner(&review(false, &[AUD], sa, Some("p")), audience), Err(Refusal::InvalidToken(e)) if e == "token expired")
            );
        }
        assert!(matches!(
            owner(&review(true, &["other"], sa, Some("p")), Audience::Gateway),
            Err(Refusal::InvalidToken(_))
        ));
        assert!(matches!(
            owner(&review(true, &[AUD], "alice", Some("p")), Audience::Gateway),
            Err(Refusal::NotAnAgentPod(_))
        ));
    }

    #[test]
    fn a_token_bound_to_no_pod_is_a_persons_and_one_bound_to_a_pod_never_is() {
        let sa = "system:serviceaccount:ns:ci";
        let mut person = review(true, &["https://kubernetes.default.svc"], sa, None);
        if let Some(user) = person.status.as_mut().and_then(|s| s.user.as_mut()) {
            user.uid = Some("u-1".into());
            user.groups = Some(vec!["system:serviceaccounts".into()]);
        }
        let want = TokenOwner::Person(Person {
            username: sa.into(),
            uid: Some("u-1".into()),
            groups: vec!["system:serviceaccounts".into()],
            extra: Default::default(),
        });
        assert_eq!(owner(&person, Audience::ApiServer), Ok(want.clone()));
        // Minted for the gateway's audience (kubectl create token --audience): still a person's.
        person.status.as_mut().unwrap().audiences = Some(vec![AUD.into()]);
        assert_eq!(owner(&person, Audience::Gateway), Ok(want));
        // A Pod's token with the API server's audience: refused, never a person.
        let pods = review(true, &["https://kubernetes.default.svc"], sa, Some("p"));
        let refused = owner(&pods, Audience::ApiServer).unwrap_err();
        assert!(matches!(refused, Refusal::NotAnAgentPod(_)), "{refused}");
        assert!(refused.to_string().contains("bound to Pod p"), "{refused}");
    }

    fn meta(uid: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_pods_labels_name_its_session_and_job() {
        let pod = BoundPod {
            namespace: "ns".into(),
            name: "p".into(),
            uid: Some("uid-1".into()),
        };
        let managed = (crds::labels::MANAGED_BY, crds::labels::MANAGER);
        let ok = meta(
            "uid-1",
            &[
                managed,
                (crds::labels::SESSION, "lead"),
                (crds::labels::JOB, "lead-1"),
            ],
        );
        assert_eq!(
            pod_session(&pod, &ok).unwrap(),
            ("lead".to_string(), Some("lead-1".to_string()))
        );
        let replaced = meta("uid-2", &[managed, (crds::labels::SESSION, "lead")]);
        assert!(
            pod_session(&pod, &replaced)
                .unwrap_err()
                .to_string()
                .contains("replaced")
        );
        let unmanaged = meta("uid-1", &[(crds::labels::SESSION, "lead")]);
        assert!(
            pod_session(&pod, &unmanaged)
                .unwrap_err()
                .to_string()
                .contains("not managed")
        );
        let no_session = meta("uid-1", &[managed]);
        assert!(
            pod_session(&pod, &no_session)
                .unwrap_err()
                .to_string()
                .contains("no agentorchestrator.dev/session")
        );
    }

    #[test]
    fn headers_give_the_claim_the_token_and_the_tags() {
        let mut h = HeaderMap::new();
        assert_eq!(claimed_session(&h), Ok(None));
        assert_eq!(bearer_token(&h), None);
        h.insert(SESSION_HEADER, "lead".parse().unwrap());
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer abc.def".parse().unwrap(),
        );
        h.insert(TAGS_HEADER, "py, review".parse().unwrap());
        assert_eq!(claimed_session(&h), Ok(Some("lead".into())));
        assert_eq!(bearer_token(&h), Some("abc.def"));
        assert_eq!(tags(&h), ["py", "review"]);
        h.insert(SESSION_HEADER, "Not Valid".parse().unwrap());
        assert!(matches!(claimed_session(&h), Err(Refusal::BadHeader(_))));
        assert_eq!(claimed_namespace(&h), Ok(None));
        h.insert(NAMESPACE_HEADER, "team-a".parse().unwrap());
        assert_eq!(claimed_namespace(&h), Ok(Some("team-a".into())));
        h.insert(NAMESPACE_HEADER, "Team_A".parse().unwrap());
        let bad = claimed_namespace(&h).unwrap_err();
        assert!(
            bad.to_string().contains("'Team_A' is not a namespace name"),
            "{bad}"
        );
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn a_caller_with_a_session_is_an_agent_and_one_without_a_developer() {
        let mut caller = Caller {
            session: Some("lead".into()),
            namespace: "ns".into(),
            job: None,
            verified: false,
            claimed: true,
            person: None,
        };
        // With --auth header the claimed session is the agent's, verified or not: the same reach rule applies.
        assert_eq!(caller.kind(), CallerKind::Agent { session: "lead" });
        caller.session = None;
        assert_eq!(caller.kind(), CallerKind::Developer);
        caller.person = Some(Person::default());
        assert_eq!(caller.kind(), CallerKind::Person);
    }

    #[tokio::test]
    async fn header_mode_takes_the_namespace_header_as_token_mode_does_for_a_person() {
        // Header mode asks the API server nothing: a client for an address that never answers will do.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let auth = Authenticator::new(
            AuthMode::Header,
            "default".into(),
            client.clone(),
            Stores::start(client),
        );
        let mut h = HeaderMap::new();
        assert_eq!(auth.authenticate(&h).await.unwrap().namespace, "default");
        h.insert(NAMESPACE_HEADER, "team-a".parse().unwrap());
        assert_eq!(auth.authenticate(&h).await.unwrap().namespace, "team-a");
        h.insert(NAMESPACE_HEADER, "Team_A".parse().unwrap());
        assert!(matches!(
            auth.authenticate(&h).await,
            Err(Refusal::BadHeader(_))
        ));
    }

    #[test]
    fn refusals_map_to_http_statuses() {
        assert_eq!(Refusal::MissingToken.status(), 401);
        assert_eq!(
            Refusal::SessionMismatch {
                claimed: "b".into(),
                actual: "a".into()
            }
            .status(),
            403
        );
    }
}
