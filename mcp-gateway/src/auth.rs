//! Who is calling. In `token` mode (the default) the caller proves its identity with the projected ServiceAccount
//! token of its Pod: TokenReview (audience crds::contract::GATEWAY_TOKEN_AUDIENCE) names the Pod, the Pod's
//! labels name its session and job. `X-Agent-Session-Name` is then only a claim that must agree. In `header` mode
//! (development only) the header is trusted as is.

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
}

impl Caller {
    /// What kind of caller this is, which decides its reach (see reach.rs).
    pub fn kind(&self) -> CallerKind<'_> {
        match self.session.as_deref() {
            Some(session) => CallerKind::Agent { session },
            None => CallerKind::Developer,
        }
    }
}

/// Why a request was refused. The text is shown to the caller.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "no bearer token: agent Pods must send their projected ServiceAccount token (audience {aud}) as \
         'Authorization: Bearer <token>'",
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
    #[error("X-Agent-Session-Name is not a valid session name: {0}")]
    BadHeader(String),
    #[error("the caller could not be verified right now: {0}")]
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Refusal::MissingToken | Refusal::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Refusal::NotAnAgentPod(_) | Refusal::SessionMismatch { .. } => StatusCode::FORBIDDEN,
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

/// A TokenReview outcome and when it stops being trusted.
type Verdict = (Instant, Result<BoundPod, Refusal>);

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
            AuthMode::Header => Ok(Caller {
                claimed: claimed.is_some(),
                session: claimed,
                namespace: self.default_namespace.clone(),
                job: None,
                verified: false,
            }),
            AuthMode::Token => {
                let token = bearer_token(headers).ok_or(Refusal::MissingToken)?;
                let pod = self.review(token).await?;
                let (session, job) = self.agent_of(&pod).await?;
                match claimed {
                    Some(claimed) if claimed != session => Err(Refusal::SessionMismatch {
                        claimed,
                        actual: session,
                    }),
                    _ => Ok(Caller {
                        claimed: claimed.is_some(),
                        session: Some(session),
                        namespace: pod.namespace,
                        job,
                        verified: true,
                    }),
                }
            }
        }
    }

    fn cached(&self, token: &str) -> Option<Result<BoundPod, Refusal>> {
        match self.verdicts.lock().expect("verdict cache lock").get(token) {
            Some((expires, verdict)) if *expires > Instant::now() => Some(verdict.clone()),
            _ => None,
        }
    }

    /// TokenReview with the gateway's audience, its verdict cached by token.
    async fn review(&self, token: &str) -> Result<BoundPod, Refusal> {
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

    async fn ask(&self, token: &str) -> Result<BoundPod, Refusal> {
        let now = Instant::now();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![crds::contract::GATEWAY_TOKEN_AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let reviewed = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                Refusal::Unavailable(format!(
                    "TokenReview failed: {}",
                    crate::error::kube_message(&e)
                ))
            })?;
        let verdict = bound_pod(&reviewed);
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

/// Reads TokenReview's answer: authenticated, for our audience, and bound to a Pod.
pub fn bound_pod(review: &TokenReview) -> Result<BoundPod, Refusal> {
    let status = review.status.clone().unwrap_or_default();
    if status.authenticated != Some(true) {
        let why = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "not authenticated".into());
        return Err(Refusal::InvalidToken(why));
    }
    let audience_ok = status.audiences.as_ref().is_none_or(|a| {
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
    let username = user.username.unwrap_or_default();
    let namespace = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split(':').next())
        .filter(|ns| !ns.is_empty())
        .ok_or_else(|| Refusal::NotAnAgentPod(format!("'{username}' is not a ServiceAccount")))?
        .to_string();
    let extra = user.extra.unwrap_or_default();
    let first = |key: &str| extra.get(key).and_then(|v| v.first()).cloned();
    let name = first("authentication.kubernetes.io/pod-name")
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
        .map_err(|_| Refusal::BadHeader("not ASCII".into()))?
        .trim();
    if value.is_empty() {
        return Ok(None);
    }
    validate::session_name("X-Agent-Session-Name", value)
        .map_err(|e| Refusal::BadHeader(e.to_string().trim_start_matches("Error: ").to_string()))?;
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
        let pod = bound_pod(&review(
            true,
            &[AUD],
            "system:serviceaccount:team-a:default",
            Some("p1"),
        ))
        .unwrap();
        assert_eq!(
            pod,
            BoundPod {
                namespace: "team-a".into(),
                name: "p1".into(),
                uid: Some("uid-1".into())
            }
        );
    }

    #[test]
    fn unauthenticated_foreign_audience_user_or_unbound_tokens_are_refused() {
        let sa = "system:serviceaccount:ns:default";
        assert!(
            matches!(bound_pod(&review(false, &[AUD], sa, Some("p"))), Err(Refusal::InvalidToken(e)) if e == "token expired")
        );
        assert!(matches!(
            bound_pod(&review(true, &["other"], sa, Some("p"))),
            Err(Refusal::InvalidToken(_))
        ));
        assert!(matches!(
            bound_pod(&review(true, &[AUD], "alice", Some("p"))),
            Err(Refusal::NotAnAgentPod(_))
        ));
        assert!(matches!(
            bound_pod(&review(true, &[AUD], sa, None)),
            Err(Refusal::NotAnAgentPod(_))
        ));
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
        };
        // With --auth header the claimed session is the agent's, verified or not: the same reach rule applies.
        assert_eq!(caller.kind(), CallerKind::Agent { session: "lead" });
        caller.session = None;
        assert_eq!(caller.kind(), CallerKind::Developer);
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
