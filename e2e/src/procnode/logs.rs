//! `kubectl logs` for the process node's Pods: the kubelet's log endpoint, `GET /containerLogs/{namespace}/{pod}/
//! {container}` (with `follow`, `tailLines`, `limitBytes`), answered from the log files, over TLS with a
//! self-signed certificate (the local API server does not verify kubelets' certificates). The Node advertises the
//! port in `status.daemonEndpoints`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Where a container's output goes (`ROOT/logs/NAMESPACE/POD/CONTAINER.log`), and the marker written when it has
/// ended (so `follow` knows when to stop).
pub fn log_file(root: &Path, ns: &str, pod: &str, container: &str) -> PathBuf {
    root.join("logs")
        .join(ns)
        .join(pod)
        .join(format!("{container}.log"))
}

pub fn ended_marker(log: &Path) -> PathBuf {
    log.with_extension("log.ended")
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    #[serde(default)]
    follow: Option<String>,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

/// Serves the log endpoint on a free loopback port and returns the port.
pub async fn serve(root: PathBuf) -> Result<u16> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("self-signed certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .with_state(Arc::new(root));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    Ok(port)
}

async fn container_logs(
    State(root): State<Arc<PathBuf>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let path = log_file(&root, &ns, &pod, &container);
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return (
            StatusCode::NOT_FOUND,
            format!("no log of container {container} of Pod {ns}/{pod}"),
        )
            .into_response();
    };
    let mut text = Vec::new();
    if file.read_to_end(&mut text).await.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the log").into_response();
    }
    let offset = text.len() as u64;
    let mut start = 0;
    if let Some(n) = params.tail_lines {
        let mut seen = 0;
        for (i, b) in text.iter().enumerate().rev().skip(1) {
            if *b == b'\n' {
                seen += 1;
                if seen == n {
                    start = i + 1;
                    break;
                }
            }
        }
        if seen < n {
            start = 0;
        }
    }
    let mut head = text.split_off(start);
    if let Some(limit) = params.limit_bytes {
        head.truncate(limit);
    }
    let follow = params.follow.as_deref() == Some("true");
    if !follow {
        return head.into_response();
    }
    // Follow: what is there, then what is appended, until the container has ended.
    let marker = ended_marker(&path);
    let first = stream::once(async move { Ok::<_, Infallible>(head) });
    let rest = stream::unfold((file, offset, false), move |(mut file, offset, done)| {
        let marker = marker.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let ended = marker.exists();
                let mut more = Vec::new();
                let _ = file.seek(std::io::SeekFrom::Start(offset)).await;
                let _ = file.read_to_end(&mut more).await;
                if !more.is_empty() || ended {
                    let next = offset + more.len() as u64;
                    return Some((Ok::<_, Infallible>(more), (file, next, ended)));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    Body::from_stream(futures::StreamExt::chain(first, rest)).into_response()
}
