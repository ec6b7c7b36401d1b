//! `mcp-gateway`: the MCP server through which agents start and steer their child sessions.

mod access;
mod auth;
mod budget;
mod cli;
mod domain;
mod error;
mod events;
mod format;
mod index;
mod limits;
mod metrics;
mod naming;
mod ops;
mod plan;
mod reach;
mod reference;
mod result_api;
mod server;
mod store;
mod tool_outcomes;
mod tools;
mod trace;
mod ui;
mod validate;

use std::sync::Arc;

use agent_telemetry::Telemetry;
use anyhow::Context;
use clap::Parser;
use kube::Client;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    if let Some(path) = &args.write_tool_reference {
        return reference::write(path);
    }
    let telemetry = Telemetry::from_env("mcp-gateway")
        .map_err(|e| anyhow::anyhow!("tracing configuration: {e}"))?;
    init_logging(&args.log_format, &telemetry);

    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration: run in a cluster or set KUBECONFIG")?;
    check_crds(&client).await?;
    if args.auth == auth::AuthMode::Header {
        tracing::warn!(
            "--auth=header: X-Agent-Session-Name is trusted without proof; anyone who can reach this gateway can \
             act as any session. Use it for local development only."
        );
    }

    let stores = store::Stores::start(client.clone());
    let authenticator = auth::Authenticator::new(
        args.auth,
        args.namespace.clone(),
        client.clone(),
        stores.clone(),
    );
    let mut app = ops::App::new(client, stores, authenticator);
    app.limits = args.default_limits();
    let app = Arc::new(app);

    let (router, cancel_requests) = server::router(app.clone(), &args.allowed_hosts);
    let router = router.merge(ui::router(app, args.dashboard));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, auth = ?args.auth, namespace = %args.namespace, "mcp-gateway listening; MCP at /mcp");
    if args.dashboard {
        tracing::info!("dashboard at http://{addr}/ui/");
    }
    // One machine-readable line on stdout, so a supervisor (or a test) started with port 0 learns the address.
    println!("mcp-gateway listening on {addr}");

    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            cancel_requests();
        })
        .await
        .context("serving HTTP")?;
    telemetry.shutdown();
    Ok(())
}

/// Fails fast, with the fix, when the API lacks the CRDs: otherwise every watch would retry forever.
async fn check_crds(client: &Client) -> anyhow::Result<()> {
    use kube::api::{Api, ListParams};
    let probe = ListParams::default().limit(1);
    let result = async {
        Api::<crds::AgentJob>::all(client.clone())
            .list_metadata(&probe)
            .await?;
        Api::<crds::AgentSession>::all(client.clone())
            .list_metadata(&probe)
            .await?;
        Api::<crds::AgentBlueprint>::all(client.clone())
            .list_metadata(&probe)
            .await?;
        Ok::<_, kube::Error>(())
    }
    .await;
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the agentorchestrator.dev CRDs are not installed: kubectl apply -f crds/manifests/ (or install the \
             Helm chart)"
        ),
        other => other.context("listing AgentJobs, AgentSessions and AgentBlueprints"),
    }
}

fn init_logging(format: &str, telemetry: &Telemetry) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if format == "json" {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(telemetry.layer())
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
