//! `agent-operator`: the controller that runs AgentJobs as Pods and keeps AgentSessions and their callbacks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_operator::config::Config;
use agent_operator::domain::pod::PodDefaults;
use agent_operator::http::{Health, serve};
use agent_operator::metrics::Metrics;
use agent_operator::{controller, leader};
use clap::Parser;
use crds::{AgentBlueprint, AgentJob, AgentSession};
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

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
    };
    let namespace = config.namespace.clone();

    let run = async {
        if !config.leader_election {
            ready.store(true, Ordering::Relaxed);
            metrics.leader.set(1);
            controller::run(client.clone(), namespace, defaults, metrics.clone()).await;
            return Ok::<_, anyhow::Error>(());
        }
        let lease_ns = config
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let mut leadership = leader::elect(
            client.clone(),
            &lease_ns,
            &config.lease_name,
            &identity,
            config.lease_duration_seconds,
        )
        .await?;
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%identity, lease = %config.lease_name, "waiting for leadership");
        leadership.acquired().await;
        tracing::info!(%identity, "became leader; starting controllers");
        metrics.leader.set(1);
        tokio::select! {
            _ = controller::run(client.clone(), namespace, defaults, metrics.clone()) => Ok(()),
            _ = leadership.lost() => {
                tracing::error!("lost leadership; exiting so that only the new leader writes");
                std::process::exit(1);
            }
        }
    };
    tokio::select! {
        r = run => r?,
        r = http => r??,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
    }
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
    format!("{host}-{}", std::process::id())
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
