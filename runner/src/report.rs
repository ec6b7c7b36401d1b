//! Where the outcome goes: the gateway's result endpoint (the primary record; it outlives the Pod's status and
//! carries the agent's session id) and the termination message (the fallback the operator reads from the Pod).

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::outcome::Outcome;

/// The gateway accepts reports up to 1 MiB and cuts the stored result to 32 KiB with a marker; a larger result is
/// cut here first, so that the gateway still sees (and marks) it as cut rather than refusing it.
const MAX_REPORT_RESULT_BYTES: usize = 1000 * 1024;

/// How a report ended.
#[derive(Debug, PartialEq)]
pub enum Reported {
    Accepted,
    /// Refused for good (4xx other than 408/429): retrying would not help.
    Refused(u16, String),
    /// Still failing when the retry budget ran out.
    GaveUp(String),
}

/// Retry schedule of transient failures.
#[derive(Debug, Clone)]
pub struct Retry {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub budget: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            budget: Duration::from_secs(120),
        }
    }
}

/// The JSON body of a report.
pub fn body(outcome: &Outcome) -> serde_json::Value {
    let mut result = outcome.result.as_str();
    if result.len() > MAX_REPORT_RESULT_BYTES {
        let mut end = MAX_REPORT_RESULT_BYTES;
        while !result.is_char_boundary(end) {
            end -= 1;
        }
        result = &result[..end];
    }
    let mut body = json!({"result": result});
    if let Some(id) = &outcome.session_id {
        body["agentSessionId"] = id.clone().into();
    }
    if let Some(error) = &outcome.error {
        body["error"] = error.clone().into();
    }
    if let Some(usage) = &outcome.usage {
        body["usage"] = serde_json::to_value(usage).expect("usage serialises");
    }
    body
}

/// The JSON body of a progress report: the usage so far, flagged so the gateway writes nothing else.
pub fn progress_body(usage: &crds::Usage) -> serde_json::Value {
    json!({"progress": true, "usage": usage})
}

/// Posts the outcome to `url` with the Pod's token, retrying transient failures (connection errors, 5xx, 408,
/// 429) with exponential backoff within the retry budget.
pub async fn to_gateway(
    url: &str,
    token: Option<&str>,
    outcome: &Outcome,
    retry: &Retry,
) -> Reported {
    post(url, token, &body(outcome), retry).await
}

/// Posts `payload` as JSON to `url`, with the retries of `to_gateway`.
pub async fn post(
    url: &str,
    token: Option<&str>,
    payload: &serde_json::Value,
    retry: &Retry,
) -> Reported {
    let connector = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(builder) => builder.https_or_http().enable_http1().build(),
        Err(e) => return Reported::GaveUp(format!("no TLS roots: {e}")),
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let payload = Bytes::from(payload.to_string());
    let deadline = tokio::time::Instant::now() + retry.budget;
    let mut delay = retry.first_delay;
    loop {
        let mut request = http::Request::post(url).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match request.body(Full::new(payload.clone())) {
            Ok(r) => r,
            Err(e) => return Reported::Refused(0, format!("invalid result URL {url}: {e}")),
        };
        let failure =
            match tokio::time::timeout(Duration::from_secs(30), client.request(request)).await {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let text = match response.into_body().collect().await {
                        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                        Err(e) => e.to_string(),
                    };
                    if status.is_success() {
                        return Reported::Accepted;
                    }
                    let transient = status.is_server_error()
                        || status == http::StatusCode::TOO_MANY_REQUESTS
                        || status == http::StatusCode::REQUEST_TIMEOUT;
                    if !transient {
                        return Reported::Refused(status.as_u16(), text);
                    }
                    format!("{status}: {text}")
                }
                Ok(Err(e)) => format!("{e:?}"),
                Err(_) => "no answer within 30 s".into(),
            };
        if tokio::time::Instant::now() + delay > deadline {
            return Reported::GaveUp(failure);
        }
        tracing::warn!(%url, error = %failure, retry_in = ?delay, "reporting the result failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(retry.max_delay);
    }
}

/// Writes the termination message (best effort: a missing folder only costs the fallback).
pub fn termination_message(path: &Path, outcome: &Outcome) {
    if let Err(e) = std::fs::write(path, outcome.termination_message()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the termination message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Exit;
    use std::sync::{Arc, Mutex};

    /// A gateway stand-in that answers with `codes` in turn (then 200) and records what it got.
    async fn gateway(
        codes: Vec<u16>,
    ) -> (String, Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let codes = Arc::new(Mutex::new(codes));
        let app = {
            let seen = seen.clone();
            axum::Router::new().route(
                "/v1/namespaces/{ns}/agentjobs/{job}/result",
                axum::routing::post(move |headers: http::HeaderMap, body: String| {
                    let seen = seen.clone();
                    let codes = codes.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string());
                        seen.lock()
                            .unwrap()
                            .push((auth, serde_json::from_str(&body).unwrap()));
                        let mut codes = codes.lock().unwrap();
                        let code = if codes.is_empty() {
                            200
                        } else {
                            codes.remove(0)
                        };
                        (http::StatusCode::from_u16(code).unwrap(), "answer")
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (
            format!("http://{addr}/v1/namespaces/ns/agentjobs/j1/result"),
            seen,
        )
    }

    fn quick() -> Retry {
        Retry {
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            budget: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_accepted() {
        let (url, seen) = gateway(vec![503, 429]).await;
        let outcome = Outcome::succeeded("done".into(), Some("sid".into()));
        assert_eq!(
            to_gateway(&url, Some("tok"), &outcome, &quick()).await,
            Reported::Accepted
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].0.as_deref(), Some("Bearer tok"));
        assert_eq!(
            seen[2].1,
            json!({"result": "done", "agentSessionId": "sid"})
        );
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let (url, seen) = gateway(vec![403]).await;
        let outcome = Outcome::failed(Exit::Code(2), "bad".into(), None);
        assert_eq!(
            to_gateway(&url, None, &outcome, &quick()).await,
            Reported::Refused(403, "answer".into())
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, json!({"result": "", "error": "bad"}));
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_given_up_within_the_budget() {
        // A port bound but not listening refuses connections, and stays ours for the whole test (a listener
        // dropped before the test would free the port for any other process to take).
        let unreachable = tokio::net::TcpSocket::new_v4().unwrap();
        unreachable.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}/r", unreachable.local_addr().unwrap());
        let retry = Retry {
            budget: Duration::from_millis(200),
            ..quick()
        };
        let outcome = Outcome::succeeded("x".into(), None);
        // Generous bound (budget + several seconds): the point is that it gives up rather than hangs.
        let reported = tokio::time::timeout(
            retry.budget + Duration::from_secs(10),
            to_gateway(&url, None, &outcome, &retry),
        )
        .await
        .expect("still retrying well past the budget");
        assert!(matches!(reported, Reported::GaveUp(_)), "{reported:?}");
        drop(unreachable);
    }

    #[test]
    fn huge_results_are_cut_before_sending() {
        let outcome = Outcome::succeeded("a".repeat(2 * MAX_REPORT_RESULT_BYTES), None);
        assert_eq!(
            body(&outcome)["result"].as_str().unwrap().len(),
            MAX_REPORT_RESULT_BYTES
        );
        // One ASCII byte, then 4-byte chars: the cut point falls inside a char.
        let text = format!("a{}", "😀".repeat(MAX_REPORT_RESULT_BYTES / 2));
        assert!(
            !text.is_char_boundary(MAX_REPORT_RESULT_BYTES),
            "fixture must cut mid-char"
        );
        let outcome = Outcome::succeeded(text.clone(), None);
        let kept = 1 + 4 * ((MAX_REPORT_RESULT_BYTES - 1) / 4);
        assert!(kept > MAX_REPORT_RESULT_BYTES - 4 && kept < MAX_REPORT_RESULT_BYTES);
        assert_eq!(body(&outcome)["result"].as_str().unwrap(), &text[..kept]);
    }
}
