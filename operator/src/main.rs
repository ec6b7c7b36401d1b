//! `agent-operator`: the controller that runs AgentJobs as Pods and keeps AgentSessions and their callbacks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_operator::config::Config;
use agent_operator::controller;
use agent_operator::domain::pod::PodDefaults;
use agent_operator::http::{Health, serve};
use agent_operator::metrics::Metrics;
use agent_telemetry::Telemetry;
use clap::Parser;
use crds::{AgentBlueprint, AgentJob, AgentSession};
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use kube_lease_manager::LeaseManagerBuilder;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let telemetry = match Telemetry::from_env("agent-operator") {
        Ok(t) => t,
        Err(e) => fatal(format!("tracing configuration: {e}")),
    };
    let logs = if config.log_json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(telemetry.layer())
        .init();

    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => fatal(format!(
            "no Kubernetes configuration (in-cluster or KUBECONFIG): {e}"
        )),
    };
    if let Err(e) = check_crds(&client).await {
        fatal(e.to_string());
    }

    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let http = tokio::spawn(serve(
        config.metrics_addr,
        Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    ));
    let defaults = PodDefaults {
        image: config.agent_image.clone(),
        mcp_url: config.mcp_url.clone(),
        otlp_endpoint: config.agent_otlp_endpoint.clone(),
    };
    let namespace = config.namespace.clone();

    // SIGTERM (what the kubelet sends; the operator is PID 1 in its image, so nothing handles it by default) and
    // SIGINT both start a graceful stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM; stopping"),
            _ = int.recv() => tracing::info!("SIGINT; stopping"),
        }
        let _ = stop_tx.send(true);
    });
    let stopping = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    let policies = controller::Policies {
        default_job_ttl_seconds: config.default_job_ttl_seconds,
        retry_backoff_base: Duration::from_secs(config.retry_backoff_base_seconds),
        default_session_retention_seconds: config.default_session_retention_seconds,
        governance: config.governance(),
    };
    let run = async {
        if !config.leader_election {
            ready.store(true, Ordering::Relaxed);
            metrics.leader.set(1);
            controller::run_until(
                client.clone(),
                namespace,
                defaults,
                policies.clone(),
                metrics.clone(),
                stopping(),
            )
            .await;
            return Ok::<_, anyhow::Error>(());
        }
        let lease_ns = config
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let duration = config.lease_duration_seconds;
        let build = || {
            LeaseManagerBuilder::new(client.clone(), &config.lease_name)
                .with_namespace(&lease_ns)
                .with_identity(&identity)
                .with_duration(duration)
                .with_grace((duration / 3).max(1))
                .build()
        };
        let mut manager = build().await?;
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%identity, lease = %config.lease_name, "waiting for leadership");
        // Followers look at the lease twice a second, so a lease released by a leader that stops is taken within
        // about half a second (the lease manager alone would sleep until the released lock's old expiry, and it
        // reads the Lease again only then, so each look is a fresh manager, which reads it at once).
        let mut leader = false;
        loop {
            let step = async {
                match tokio::time::timeout(Duration::from_millis(500), manager.changed()).await {
                    Ok(r) => r.map(Some),
                    Err(_) => build().await.map(|m| {
                        manager = m;
                        None
                    }),
                }
            };
            tokio::select! {
                _ = stopping() => break,
                r = step => match r {
                    Ok(Some(true)) => {
                        leader = true;
                        tracing::info!(%identity, "became leader; starting controllers");
                        metrics.leader.set(1);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lease check failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        if leader {
            let controllers = controller::run_until(
                client.clone(),
                namespace,
                defaults,
                policies.clone(),
                metrics.clone(),
                stopping(),
            );
            tokio::pin!(controllers);
            loop {
                tokio::select! {
                    _ = &mut controllers => break,
                    r = manager.changed() => match r {
                        Ok(false) => {
                            tracing::error!("lost leadership; exiting so that only the new leader writes");
                            std::process::exit(1);
                        }
                        Ok(true) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "lease renewal failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        // Stopped: give the lease back so that the standby (or this Pod restarted) leads at once.
        match manager.release().await {
            Ok(()) => tracing::info!(%identity, "lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the lease; it expires on its own")
            }
        }
        metrics.leader.set(0);
        Ok(())
    };
    tokio::select! {
        r = run => r?,
        r = http => r??,
    }
    tracing::info!("stopped");
    // Spans of jobs that ended in the last moments are still in the exporter's queue.
    telemetry.shutdown();
    Ok(())
}

/// Start-up failures end the process with the message alone: they are for a person, not a backtrace.
fn fatal(message: String) -> ! {
    eprintln!("agent-operator: {message}");
    std::process::exit(2);
}

fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "agent-operator".into());
    // The Pod's name alone, so that a restarted container takes its own lease back at once.
    host
}

/// Fails fast, with the fix in the message, when the API does not serve our kinds.
async fn check_crds(client: &Client) -> anyhow::Result<()> {
    async fn served<K>(client: &Client) -> anyhow::Result<()>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(client.clone());
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
                "the {} CRD is not installed in this cluster: apply crds/manifests/ (kubectl apply -f crds/manifests/) or install the Helm chart",
                K::plural(&())
            ),
            Err(e) => Err(anyhow::anyhow!(
                "cannot reach the Kubernetes API to check the CRDs: {e}"
            )),
        }
    }
    served::<AgentJob>(client).await?;
    served::<AgentSession>(client).await?;
    served::<AgentBlueprint>(client).await?;
    Ok(())
}
