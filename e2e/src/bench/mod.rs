//! `make bench`: the benchmarks, each against the local control plane with the operator (and gateway) as real
//! processes, in namespaces of their own. The figures are printed by `bin/bench.rs`.

pub mod callbacks;
pub mod dashboard;
pub mod gateway;
pub mod handover;
pub mod lifecycle;
pub mod mcp_load;
pub mod scale;
pub mod tracing;

use std::time::Duration;

use crds::AgentJob;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Objects are created this many at a time.
pub const CREATE_PARALLELISM: usize = 64;

/// A fresh, empty namespace `name` (an earlier run's is deleted first, see `remove_namespace`).
pub async fn fresh_namespace(client: &Client, name: &str) {
    remove_namespace(client, name).await;
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    crate::wait_for(
        &accounts,
        "default",
        Duration::from_secs(30),
        |s: Option<&_>| s.is_some(),
    )
    .await;
}

/// Deletes namespace `name`, if it exists, and waits until it is gone. The operator of the run that used it is
/// gone, and with it whoever would have taken the callback finalizer off its last children: it is taken off here,
/// or the namespace would never finish terminating.
pub async fn remove_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.unwrap().is_none() {
        return;
    }
    let _ = api.delete(name, &DeleteParams::default()).await;
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), name);
    let held = jobs.list(&ListParams::default()).await.unwrap();
    let no_finalizers = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    for job in held.items.iter().filter(|j| !j.finalizers().is_empty()) {
        let _ = jobs
            .patch(&job.name_any(), &PatchParams::default(), &no_finalizers)
            .await;
    }
    crate::wait_for(
        &api,
        name,
        Duration::from_secs(300),
        |n: Option<&Namespace>| n.is_none(),
    )
    .await;
}

/// The peak resident memory of process `pid` (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmHWM:")
}

/// The resident memory of process `pid` now (VmRSS), in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

/// The CPU time process `pid` has used so far (user and system, from /proc/PID/stat; Linux counts it in ticks of
/// 1/100 s for every process, whatever the kernel's own tick).
pub fn cpu_time(pid: u32) -> Duration {
    cpu_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

fn cpu_of_stat(stat: &str) -> Duration {
    // The command name, in parentheses, may hold spaces: the fields are counted after its closing one.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the name: state is field 3 of the whole line, utime 14 and stime 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The `p`th percentile (nearest rank) of `values`.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&ms, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&ms[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn cpu_time_is_user_plus_system_counted_after_the_name() {
        // A name with a space and a parenthesis of its own: the fields are counted from the last ')'.
        let stat =
            "4242 (agent (op) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 1000 0 0";
        assert_eq!(cpu_of_stat(stat), Duration::from_millis(3250));
        assert_eq!(cpu_of_stat(""), Duration::ZERO);
    }
}
