//! The cluster and namespace to talk to, chosen like kubectl does: `--kubeconfig` (else `$KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster account), `--context`, `-n` (else the context's namespace, else `default`).

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{CliError, Result};

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file.
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Every namespace (tree only).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
}

/// A client and the namespace commands act in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl ClusterArgs {
    pub async fn connect(&self) -> Result<Cluster> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                // $KUBECONFIG may list several files, as for kubectl.
                let mut merged: Option<Kubeconfig> = None;
                for file in std::env::split_paths(path) {
                    let one = Kubeconfig::read_from(&file).map_err(|e| {
                        CliError::Other(format!("cannot read kubeconfig {}: {e}", file.display()))
                    })?;
                    merged = Some(match merged {
                        None => one,
                        Some(m) => m.merge(one).map_err(|e| CliError::Other(e.to_string()))?,
                    });
                }
                let kubeconfig =
                    merged.ok_or_else(|| CliError::Other("empty --kubeconfig".into()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await.or_else(|e| {
                if self.context.is_some() {
                    Err(e)
                } else {
                    Config::incluster().map_err(|_| e)
                }
            }),
        }
        .map_err(|e| CliError::Other(format!("no usable kubeconfig: {e}")))?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| CliError::kube("connecting", e))?;
        Ok(Cluster { client, namespace })
    }
}
