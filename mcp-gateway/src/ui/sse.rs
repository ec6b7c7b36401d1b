//! Server-sent events as the dashboard receives them: the framing, the heartbeat, and the response headers that keep
//! proxies from buffering or caching the stream.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

/// A comment line this often keeps idle connections open through proxies and load balancers.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
pub const HEARTBEAT_FRAME: &str = ": heartbeat\n\n";

/// One event: `id:` (when given), `event:`, and the data split into `data:` lines (a newline inside the data would
/// otherwise end the field).
pub fn frame(id: Option<&str>, event: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The sending half of an event stream; sending fails once the browser has gone.
pub type Sender = mpsc::Sender<String>;

/// A streaming response fed by the frames sent to the returned sender.
pub fn response() -> (Sender, Response) {
    let (tx, rx) = mpsc::channel::<String>(64);
    let body = Body::from_stream(rx.map(Ok::<_, std::convert::Infallible>));
    let response = Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        // nginx (and ingress-nginx) buffer responses unless told not to: events would arrive in bursts.
        .header("x-accel-buffering", "no")
        .body(body)
        .expect("static headers are valid");
    (tx, response)
}

/// Sends a frame; false when the browser has gone.
pub async fn send(tx: &mut Sender, frame: String) -> bool {
    tx.send(frame).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_id_event_and_one_data_line_per_line() {
        assert_eq!(
            frame(Some("1-2"), "upsert", "{\"a\":1}"),
            "id: 1-2\nevent: upsert\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            frame(None, "log", "one\r\ntwo"),
            "event: log\ndata: one\ndata: two\n\n"
        );
        assert!(HEARTBEAT_FRAME.starts_with(':') && HEARTBEAT_FRAME.ends_with("\n\n"));
    }

    #[tokio::test]
    async fn the_response_does_not_buffer_or_cache() {
        let (mut tx, response) = response();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        assert!(send(&mut tx, frame(None, "x", "y")).await);
        drop(response);
        assert!(!send(&mut tx, frame(None, "x", "y")).await);
    }
}
