//! The kubelet's part for the Pods bound to the process node: run each container as a local process, report
//! Running and then the exit codes, stop on deletion (SIGTERM, then SIGKILL after the grace period) and on
//! `activeDeadlineSeconds`, and finish deletions as the kubelet does (delete with grace period 0).
//!
//! Restart policy is treated as `Never` (agent Pods' policy); init containers run one after the other first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::Config;
use super::container::{PathMap, command_line, expand, field};
use super::status::{self, Ended};
use super::volumes;

/// Kubernetes keeps at most this much of a termination message; FallbackToLogsOnError takes the log's tail.
const MAX_MESSAGE_BYTES: usize = 4096;
const FALLBACK_LOG_BYTES: usize = 2048;

/// Why a running Pod is being stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// Deleted: stop within this many seconds, then delete for good.
    Deleted(i64),
}

/// Watches the node's Pods and runs them, until the watch ends.
pub async fn run(client: Client, config: Arc<Config>) -> Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", config.node);
    let mut events = watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .touched_objects()
        .boxed();
    let running: Arc<Mutex<HashMap<String, watch::Sender<Option<Stop>>>>> = Default::default();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(pod) => pod,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch");
                continue;
            }
        };
        let uid = pod.uid().unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
        if let Some(stop) = running.lock().expect("lock").get(&uid) {
            if deleting {
                stop.send_if_modified(|s| {
                    let changed = s.is_none();
                    *s = Some(Stop::Deleted(grace));
                    changed
                });
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if deleting {
            // Never started here, or already finished: nothing runs, so the deletion can complete.
            finish_deletion(&client, &pod).await;
            continue;
        }
        if seen.contains(&uid) {
            continue;
        }
        match phase.as_deref() {
            None | Some("Pending") => {
                seen.insert(uid.clone());
                let (tx, rx) = watch::channel(None);
                running.lock().expect("lock").insert(uid.clone(), tx);
                let (client, config, running) = (client.clone(), config.clone(), running.clone());
                tokio::spawn(async move {
                    let name =
                        format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                    if let Err(e) = run_pod(&client, &config, &pod, rx).await {
                        tracing::error!(pod = %name, error = format!("{e:#}"), "running the Pod failed");
                    }
                    running.lock().expect("lock").remove(&uid);
                });
            }
            Some("Running") => {
                // Running according to the API but not here: the process node restarted and the process is lost.
                seen.insert(uid.clone());
                let containers = names(&pod);
                let images = images(&pod);
                let body = status::not_started(
                    &containers,
                    &images,
                    Timestamp::now(),
                    "ProcessNodeRestarted",
                    "the process node restarted while the Pod ran; its processes are gone",
                );
                let _ = patch_status(&client, &pod, body).await;
            }
            _ => {
                seen.insert(uid);
            }
        }
    }
    Err(anyhow!("the Pod watch ended"))
}

fn names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect()
}

fn images(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .map(|c| c.image.clone().unwrap_or_default())
        })
        .collect()
}

async fn patch_status(client: &Client, pod: &Pod, status: serde_json::Value) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .with_context(|| format!("status of Pod {}", pod.name_any()))?;
    Ok(())
}

/// The kubelet's last word on a deleted Pod: delete it with grace period 0 (only this Pod, by UID).
async fn finish_deletion(client: &Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api.delete(&pod.name_any(), &params).await {
        tracing::debug!(pod = %pod.name_any(), error = %e, "final delete");
    }
}

/// The folder of one Pod's files, logs and emptyDirs.
pub fn pod_dir(root: &Path, pod: &Pod) -> PathBuf {
    let uid = pod.uid().unwrap_or_default();
    root.join("pods").join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        &uid[..uid.len().min(8)]
    ))
}

/// One container, ready to start.
struct Prepared {
    name: String,
    line: Vec<String>,
    env: BTreeMap<String, String>,
    work_dir: PathBuf,
    termination_file: PathBuf,
    fallback_to_logs: bool,
    log: PathBuf,
}

async fn prepare(
    client: &Client,
    config: &Config,
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    dir: &Path,
) -> Result<Prepared> {
    let termination_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let termination_file = dir.join("termination").join(&container.name);
    std::fs::create_dir_all(termination_file.parent().expect("has a parent"))?;
    std::fs::write(&termination_file, b"")?;
    let mut mounts = vec![(PathBuf::from(&termination_path), termination_file.clone())];
    for m in container.volume_mounts.iter().flatten() {
        let local = volumes
            .get(&m.name)
            .ok_or_else(|| anyhow!("volume mount {} names no volume", m.name))?;
        let local = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => local.join(sub),
            None => local.clone(),
        };
        mounts.push((PathBuf::from(&m.mount_path), local));
    }
    let paths = PathMap::new(mounts);
    let env = environment(client, config, pod, container, &paths).await?;
    let entrypoint = config.entrypoint(container.image.as_deref().unwrap_or_default());
    let line = command_line(
        container.command.as_deref().unwrap_or_default(),
        container.args.as_deref().unwrap_or_default(),
        entrypoint.as_deref(),
        &env,
        &paths,
    )
    .ok_or_else(|| {
        anyhow!(
            "container {} has no command, and the process node knows no entrypoint for image {:?} (see --entrypoint)",
            container.name,
            container.image.as_deref().unwrap_or_default()
        )
    })?;
    let work_dir = match container.working_dir.as_deref() {
        Some(w) => paths
            .local(w)
            .ok_or_else(|| anyhow!("working folder {w} is not on a volume"))?,
        None => dir.join("root"),
    };
    std::fs::create_dir_all(&work_dir).with_context(|| format!("create {}", work_dir.display()))?;
    let log = super::logs::log_file(
        &config.root,
        &pod.namespace().unwrap_or_default(),
        &pod.name_any(),
        &container.name,
    );
    std::fs::create_dir_all(log.parent().expect("has a parent"))?;
    Ok(Prepared {
        name: container.name.clone(),
        line,
        env,
        work_dir,
        termination_file,
        fallback_to_logs: container.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError"),
        log,
    })
}

/// The container's environment: `env` in order (each may refer to earlier ones with `$(NAME)`), after `envFrom`,
/// with in-container paths translated; plus PATH and HOME from the node when the Pod sets none.
async fn environment(
    client: &Client,
    config: &Config,
    pod: &Pod,
    container: &Container,
    paths: &PathMap,
) -> Result<BTreeMap<String, String>> {
    let ns = pod.namespace().unwrap_or_default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            if let Some(cm) = api.get_opt(&r.name).await? {
                for (k, v) in cm.data.unwrap_or_default() {
                    env.insert(format!("{prefix}{k}"), v);
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            if let Some(s) = api.get_opt(&r.name).await? {
                for (k, v) in s.data.unwrap_or_default() {
                    env.insert(
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    );
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        // A missing optional key leaves the variable out, a missing required one stops the Pod (as the kubelet's
        // CreateContainerConfigError does).
        let missing = |what: String, optional: Option<bool>| -> Result<Option<String>> {
            if optional == Some(true) {
                Ok(None)
            } else {
                Err(anyhow!("variable {}: {what} does not exist", var.name))
            }
        };
        let value = if let Some(v) = &var.value {
            Some(expand(v, &env))
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                Some(field(pod, &f.field_path).unwrap_or_default())
            } else if let Some(k) = &from.config_map_key_ref {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                match api
                    .get_opt(&k.name)
                    .await?
                    .and_then(|cm| cm.data?.get(&k.key).cloned())
                {
                    Some(v) => Some(v),
                    None => missing(format!("key {} of ConfigMap {}", k.key, k.name), k.optional)?,
                }
            } else if let Some(k) = &from.secret_key_ref {
                let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
                let value = api.get_opt(&k.name).await?.and_then(|s| {
                    s.data?
                        .get(&k.key)
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                });
                match value {
                    Some(v) => Some(v),
                    None => missing(format!("key {} of Secret {}", k.key, k.name), k.optional)?,
                }
            } else {
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    for value in env.values_mut() {
        *value = paths.translate(value);
    }
    env.entry("PATH".into())
        .or_insert_with(|| config.path.clone());
    env.entry("HOME".into()).or_insert_with(|| {
        pod_dir(&config.root, pod)
            .join("home")
            .display()
            .to_string()
    });
    Ok(env)
}

/// A started container process.
struct Started {
    prepared: Prepared,
    child: tokio::process::Child,
    started: Timestamp,
}

fn start(p: Prepared) -> Result<Started> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .with_context(|| format!("open {}", p.log.display()))?;
    let mut cmd = tokio::process::Command::new(&p.line[0]);
    cmd.args(&p.line[1..])
        .env_clear()
        .envs(&p.env)
        .current_dir(&p.work_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: stopping the container stops whatever it started.
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("start {:?} in container {}", p.line[0], p.name))?;
    Ok(Started {
        prepared: p,
        child,
        started: Timestamp::now(),
    })
}

/// Sends `signal` to the process group led by `pid` (one of ours). A group that is gone makes kill(2) fail with
/// ESRCH, harmlessly.
fn signal_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process group we created, with a valid signal number.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

/// Waits for a container and describes its end.
async fn wait(mut s: Started) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    let status = s.child.wait().await;
    let finished = Timestamp::now();
    let (exit_code, reason) = match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(0), _) => (0, "Completed".to_string()),
            (Some(c), _) => (c, "Error".to_string()),
            (None, Some(sig)) => (128 + sig, "Error".to_string()),
            (None, None) => (1, "Error".to_string()),
        },
        Err(e) => (1, format!("WaitFailed: {e}")),
    };
    let mut message = std::fs::read(&s.prepared.termination_file)
        .ok()
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(MAX_MESSAGE_BYTES)]).into_owned())
        .filter(|m| !m.is_empty());
    if message.is_none() && exit_code != 0 && s.prepared.fallback_to_logs {
        message = std::fs::read(&s.prepared.log).ok().map(|b| {
            let tail = &b[b.len().saturating_sub(FALLBACK_LOG_BYTES)..];
            String::from_utf8_lossy(tail).into_owned()
        });
    }
    // Tells `kubectl logs -f` that nothing more will come.
    let _ = std::fs::write(super::logs::ended_marker(&s.prepared.log), b"");
    Ended {
        name: s.prepared.name.clone(),
        exit_code,
        reason,
        message,
        started: s.started,
        finished,
    }
}

async fn run_pod(
    client: &Client,
    config: &Config,
    pod: &Pod,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Result<()> {
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let dir = pod_dir(&config.root, pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let (containers, images) = (names(pod), images(pod));
    let started_at = Timestamp::now();

    let prepared: Result<(Vec<Prepared>, Vec<Prepared>)> = async {
        let volumes = volumes::prepare(client, pod, &dir.join("volumes")).await?;
        let mut init = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            init.push(prepare(client, config, pod, c, &volumes, &dir).await?);
        }
        let mut main = Vec::new();
        for c in &spec.containers {
            main.push(prepare(client, config, pod, c, &volumes, &dir).await?);
        }
        Ok((init, main))
    }
    .await;
    let (init, main) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(pod = %name, error = %message, "cannot start the Pod");
            let body = status::not_started(
                &containers,
                &images,
                started_at,
                "ProcessNodeStartFailed",
                &message,
            );
            return patch_status(client, pod, body).await;
        }
    };

    for p in init {
        let started = match start(p) {
            Ok(s) => s,
            Err(e) => {
                let body = status::not_started(
                    &containers,
                    &images,
                    started_at,
                    "InitFailed",
                    &format!("{e:#}"),
                );
                return patch_status(client, pod, body).await;
            }
        };
        let ended = wait(started).await;
        if ended.exit_code != 0 {
            let message = format!("init container {} {}", ended.name, ended.reason);
            let body =
                status::not_started(&containers, &images, started_at, "InitFailed", &message);
            return patch_status(client, pod, body).await;
        }
    }

    let mut started = Vec::new();
    for p in main {
        let log = p.log.clone();
        match start(p) {
            Ok(s) => {
                tracing::info!(pod = %name, container = %s.prepared.name, command = ?s.prepared.line,
                    log = %log.display(), "started");
                started.push(s);
            }
            Err(e) => {
                for s in &started {
                    if let Some(pid) = s.child.id() {
                        signal_group(pid, libc::SIGKILL);
                    }
                }
                let body = status::not_started(
                    &containers,
                    &images,
                    started_at,
                    "StartFailed",
                    &format!("{e:#}"),
                );
                return patch_status(client, pod, body).await;
            }
        }
    }
    patch_status(
        client,
        pod,
        status::running(&containers, &images, started_at),
    )
    .await?;

    let pids: Vec<Option<u32>> = started.iter().map(|s| s.child.id()).collect();
    let waits = futures::future::join_all(started.into_iter().map(wait));
    tokio::pin!(waits);
    let deadline = spec
        .active_deadline_seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s.max(0) as u64));
    let mut pod_reason = None;
    let mut deleted = false;
    let ended = loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            ended = &mut waits => break ended,
            _ = until_deadline, if pod_reason.is_none() => {
                tracing::info!(pod = %name, "activeDeadlineSeconds passed: stopping");
                pod_reason = Some(("DeadlineExceeded", "Pod was active on the node longer than the specified deadline"));
                stop_groups(&pids, 0);
            }
            changed = stop.changed(), if !deleted => {
                if changed.is_err() { deleted = true; continue; }
                if let Some(Stop::Deleted(grace)) = *stop.borrow() {
                    tracing::info!(pod = %name, grace, "deleted: stopping");
                    deleted = true;
                    stop_groups(&pids, grace);
                }
            }
        }
    };
    for e in &ended {
        tracing::info!(pod = %name, container = %e.name, exit_code = e.exit_code, "ended");
    }
    patch_status(
        client,
        pod,
        status::ended(&ended, &images, started_at, pod_reason),
    )
    .await?;
    if deleted {
        finish_deletion(client, pod).await;
    }
    Ok(())
}

/// SIGTERM to every container's process group, then SIGKILL after `grace` seconds to those still there.
fn stop_groups(pids: &[Option<u32>], grace: i64) {
    let pids: Vec<u32> = pids.iter().flatten().copied().collect();
    for pid in &pids {
        signal_group(*pid, libc::SIGTERM);
    }
    let grace = Duration::from_secs(grace.max(0) as u64);
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        for pid in pids {
            signal_group(pid, libc::SIGKILL);
        }
    });
}
