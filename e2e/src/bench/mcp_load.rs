//! A lean MCP load generator: N concurrent clients, each on one keep-alive HTTP/1.1 connection, sending JSON-RPC
//! `tools/call` requests to the gateway's stateless streamable HTTP endpoint (JSON responses), alternating
//! `start_agent_session` (async, a fresh session each time) with `get_agent_session_status` of the session it just
//! started. Its own cost is a few microseconds a call, so its times are the gateway's (plus loopback).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::percentile;

pub struct Load {
    pub start: Vec<Duration>,
    pub status: Vec<Duration>,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl Load {
    pub fn calls(&self) -> usize {
        self.start.len() + self.status.len()
    }

    pub fn p(samples: &[Duration], p: f64) -> f64 {
        percentile(samples, p).as_secs_f64() * 1000.0
    }
}

/// Runs `clients` clients of `calls` (start, status) pairs each against the gateway at `addr`, with `headers` on
/// every request.
pub async fn run(
    addr: SocketAddr,
    headers: Vec<(String, String)>,
    clients: usize,
    calls: usize,
) -> Load {
    let run = format!(
        "{:x}",
        std::process::id() ^ Instant::now().elapsed().subsec_nanos()
    );
    let began = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let headers = headers.clone();
            let prefix = format!("l{run}-{c}");
            tokio::spawn(async move { client(addr, headers, prefix, calls).await })
        })
        .collect();
    let mut load = Load {
        start: Vec::new(),
        status: Vec::new(),
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (start, status, errors) = t.await.expect("client task");
        load.start.extend(start);
        load.status.extend(status);
        load.errors.extend(errors);
    }
    load.elapsed = began.elapsed();
    load
}

type Samples = (Vec<Duration>, Vec<Duration>, Vec<String>);

async fn client(
    addr: SocketAddr,
    headers: Vec<(String, String)>,
    prefix: String,
    calls: usize,
) -> Samples {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let (mut start, mut status, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..calls {
        let session = format!("{prefix}-{i}");
        for (tool, args) in [
            (
                "start_agent_session",
                json!({"session_name": session, "prompt": "bench", "async_mode": true}),
            ),
            ("get_agent_session_status", json!({"session_name": session})),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                              "params": {"name": tool, "arguments": args}});
            let mut request = http::Request::post("/mcp")
                .header("host", addr.to_string())
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream");
            for (k, v) in &headers {
                request = request.header(k, v);
            }
            let request = request
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("a request");
            let t0 = Instant::now();
            let answer = match sender.send_request(request).await {
                Ok(response) => response.into_body().collect().await.map(|b| b.to_bytes()),
                Err(e) => {
                    errors.push(format!("{tool}: {e}"));
                    continue;
                }
            };
            let took = t0.elapsed();
            match answer
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            {
                Some(v) if v["result"]["isError"] == false => {}
                other => errors.push(format!("{tool}: {other:?}")),
            }
            if tool == "start_agent_session" {
                start.push(took);
            } else {
                status.push(took);
            }
        }
    }
    (start, status, errors)
}
