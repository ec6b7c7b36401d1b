//! `process-node`: runs the Pods bound to one Node as local processes (test and development infrastructure; see
//! `e2e::procnode`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use e2e::procnode::{self, Config};

const USAGE: &str = "usage: process-node [--kubeconfig FILE] [--node NAME] [--root DIR] \
[--entrypoint IMAGE_PREFIX=COMMAND]... [--default-storage-class]";

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let mut config = Config {
        node: procnode::DEFAULT_NODE.into(),
        root: e2e::workspace_root().join(".local/process-node"),
        path: std::env::var("PATH").unwrap_or_default(),
        entrypoints: vec![(
            "ghcr.io/agentorchestrator/agent-runner".into(),
            "agent-runner".into(),
        )],
        default_storage_class: false,
    };
    let mut kubeconfig = e2e::kubeconfig_path();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--kubeconfig" => kubeconfig = PathBuf::from(value("--kubeconfig")?),
            "--node" => config.node = value("--node")?,
            "--root" => config.root = PathBuf::from(value("--root")?),
            "--entrypoint" => {
                let v = value("--entrypoint")?;
                let (image, cmd) = v
                    .split_once('=')
                    .with_context(|| format!("--entrypoint {v}: IMAGE=COMMAND"))?;
                config.entrypoints.push((image.into(), cmd.into()));
            }
            "--default-storage-class" => config.default_storage_class = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("E2E_KUBECONFIG", &kubeconfig) };
    let client = e2e::client().await;
    procnode::run(client, config).await
}
