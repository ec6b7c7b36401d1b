//! Leader election through a Lease: of several replicas only the holder runs the controllers, so only it writes.
//! A replica that loses the lease exits, and its restart starts as a follower: no half-stopped writer remains.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

pub struct Leadership {
    /// True while this replica holds the lease.
    pub state: watch::Receiver<bool>,
    _task: tokio::task::JoinHandle<()>,
}

/// Starts competing for the lease `name` in `namespace`.
pub async fn elect(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: u64,
) -> anyhow::Result<Leadership> {
    let grace = (duration / 3).max(1);
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration)
        .with_grace(grace)
        .build()
        .await?;
    let (state, task) = manager.watch().await;
    let task = tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => tracing::error!("lease manager stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "lease manager failed"),
            Err(e) => tracing::error!(error = %e, "lease manager task panicked"),
        }
        // Without a lease task nobody renews the lease: stop, rather than write without holding it.
        std::process::exit(1);
    });
    Ok(Leadership { state, _task: task })
}

impl Leadership {
    /// Resolves once this replica holds the lease.
    pub async fn acquired(&mut self) {
        while !*self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves when this replica, having held the lease, loses it.
    pub async fn lost(&mut self) {
        loop {
            if self.state.changed().await.is_err() || !*self.state.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
