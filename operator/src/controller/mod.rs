//! The controllers and how they are wired to watches.
//!
//! One watch per kind (jobs, sessions, operator-owned Pods, blueprints) feeds one store. Each event first updates
//! the store, then is mapped (see `triggers`) to the reconciles it calls for, so a reconcile never runs on a store
//! older than the change that triggered it. The job and session controllers read every store.

pub mod budget;
#[cfg(test)]
mod callback_scenarios;
pub mod callbacks;
#[cfg(test)]
mod fake_api;
pub mod index;
pub mod job;
mod relist;
pub mod session;
pub mod session_index;
pub mod session_retention;
#[cfg(test)]
mod simulation;
pub mod tree;
pub mod triggers;
pub mod trim;
pub mod workspace;
#[cfg(test)]
mod write_counts;

use std::sync::Arc;

use crds::{AgentBlueprint, AgentJob, AgentSession, labels};
use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt, future, stream};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::context::Context;
use crate::domain::agent_pod::AgentPod;
use crate::domain::pod::PodDefaults;
use crate::error::Error;
use crate::metrics::Metrics;

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A store fed by a watch, and the stream of changed (or deleted) objects, each yielded after the store has it.
/// `trim` cuts each object down to what the operator reads before the store keeps it (see `trim`); `record` applies
/// each event to the store (and whatever must change with it, see `index`).
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    mut record: impl FnMut(&mut Writer<K>, &watcher::Event<K>) + Send + 'static,
) -> (Store<K>, impl Stream<Item = K>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, mut writer) = reflector::store();
    let known = writer.as_reader();
    let mut relist = relist::Relist::default();
    let changes = watcher(api, config)
        .modify(trim)
        .map_ok(move |event| {
            let touched = relist.touched(&known, &event);
            record(&mut writer, &event);
            touched
        })
        .backoff(crate::retry::WatchBackoff::new())
        .filter_map(|r| {
            future::ready(match r {
                Ok(touched) => Some(stream::iter(touched)),
                Err(e) => {
                    tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed; retrying");
                    None
                }
            })
        })
        .flatten();
    (store, changes)
}

fn plain<K: Resource<DynamicType = ()> + Clone>(writer: &mut Writer<K>, event: &watcher::Event<K>) {
    writer.apply_watcher_event(event);
}

fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    move |obj, err, ctx| {
        ctx.metrics.error(controller, err.metric_label());
        let (ns, name) = (
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default(),
        );
        let attempt = ctx.backoff.failed(controller, ns, name);
        let action = err.retry(attempt);
        if err.is_permanent() {
            tracing::warn!(controller, namespace = ns, name, error = %err,
                "the API server refused for good; not retrying soon");
        } else if !matches!(err, Error::Conflict(_)) {
            tracing::warn!(controller, namespace = ns, name, attempt, error = %err, "reconcile failed");
        }
        action
    }
}

/// Wraps a reconciler so that a success clears the object's failure count (its next failure backs off from the
/// first delay again).
fn resetting<K, F, Fut>(
    controller: &'static str,
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<Context>) -> futures::future::BoxFuture<'static, Result<Action, Error>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |obj, ctx| {
        let fut = reconcile(obj.clone(), ctx.clone());
        async move {
            let result = fut.await;
            if result.is_ok() {
                ctx.backoff.succeeded(
                    controller,
                    obj.meta().namespace.as_deref().unwrap_or_default(),
                    obj.meta().name.as_deref().unwrap_or_default(),
                );
            }
            result
        }
        .boxed()
    }
}

/// Runs both controllers until the process stops. Only the leader calls this.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    defaults: PodDefaults,
    metrics: Metrics,
) {
    run_until(
        client,
        namespace,
        defaults,
        Policies::default(),
        metrics,
        future::pending(),
    )
    .await
}

/// What the operator's flags set for retention and retries.
#[derive(Debug, Clone)]
pub struct Policies {
    /// `ttlSecondsAfterFinished` of jobs that set none (None: they are kept).
    pub default_job_ttl_seconds: Option<i64>,
    /// The wait before a job's first retry.
    pub retry_backoff_base: std::time::Duration,
    /// How long an idle session is kept before it is deleted (None: kept).
    pub default_session_retention_seconds: Option<i64>,
    /// Tree limits and the namespace running-jobs limit.
    pub governance: crate::context::Governance,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            default_job_ttl_seconds: None,
            retry_backoff_base: std::time::Duration::from_secs(10),
            default_session_retention_seconds: None,
            governance: Default::default(),
        }
    }
}

/// Runs both controllers until `shutdown` resolves; then each stops taking new work, lets the reconciles in
/// flight finish, and the Events recorded so far are published before this returns.
pub async fn run_until(
    client: Client,
    namespace: Option<String>,
    defaults: PodDefaults,
    policies: Policies,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    let ns = namespace.as_deref();
    let all = watcher::Config::default();
    let ours =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));

    let job_index = Arc::new(index::JobIndex::default());
    let (jobs, job_changes) = {
        let job_index = job_index.clone();
        reflect(
            api::<AgentJob>(&client, ns),
            all.clone(),
            trim::job,
            move |writer, event| index::record(&job_index, writer, event),
        )
    };
    let session_index = Arc::new(index::SessionIndex::default());
    let (sessions, session_changes) = {
        let session_index = session_index.clone();
        reflect(
            api::<AgentSession>(&client, ns),
            all.clone(),
            trim::session,
            move |writer, event| index::record_session(&session_index, writer, event),
        )
    };
    let (pods, pod_changes) = reflect(api::<AgentPod>(&client, ns), ours, trim::pod, plain);
    let (blueprints, blueprint_changes) = reflect(
        api::<AgentBlueprint>(&client, ns),
        all,
        trim::blueprint,
        plain,
    );

    let (job_tx, job_rx) = mpsc::unbounded::<ObjectRef<AgentJob>>();
    let (session_tx, session_rx) = mpsc::unbounded::<ObjectRef<AgentSession>>();
    let send_job = |tx: &mpsc::UnboundedSender<ObjectRef<AgentJob>>, r| {
        let _ = tx.unbounded_send(r);
    };
    let send_session = |tx: &mpsc::UnboundedSender<ObjectRef<AgentSession>>, r| {
        let _ = tx.unbounded_send(r);
    };

    let limited = policies.governance.max_running_jobs.is_some();
    let dispatch_jobs = {
        let (job_tx, session_tx, jobs, index) = (
            job_tx.clone(),
            session_tx.clone(),
            jobs.clone(),
            job_index.clone(),
        );
        job_changes.for_each(move |job| {
            let (me, sessions) = triggers::of_job(&job);
            send_job(&job_tx, me);
            triggers::waiting_for_start(&job, &index, &jobs)
                .into_iter()
                .for_each(|j| send_job(&job_tx, j));
            if limited {
                triggers::waiting_for_a_place(&job, &index, &jobs)
                    .into_iter()
                    .for_each(|j| send_job(&job_tx, j));
            }
            sessions
                .into_iter()
                .for_each(|s| send_session(&session_tx, s));
            future::ready(())
        })
    };
    let dispatch_sessions = {
        let (job_tx, session_tx, jobs, index) = (
            job_tx.clone(),
            session_tx.clone(),
            jobs.clone(),
            job_index.clone(),
        );
        session_changes.for_each(move |session| {
            let (me, waiting) = triggers::of_session(&session, &index, &jobs);
            send_session(&session_tx, me);
            triggers::usage_parent(&session)
                .into_iter()
                .for_each(|p| send_session(&session_tx, p));
            waiting.into_iter().for_each(|j| send_job(&job_tx, j));
            future::ready(())
        })
    };
    let dispatch_pods = {
        let (job_tx, session_tx) = (job_tx.clone(), session_tx.clone());
        pod_changes.for_each(move |pod| {
            let (job, session) = triggers::of_pod(&pod);
            job.into_iter().for_each(|j| send_job(&job_tx, j));
            session
                .into_iter()
                .for_each(|s| send_session(&session_tx, s));
            future::ready(())
        })
    };
    let blueprint_store = blueprint_changes.for_each(|_| future::ready(()));

    let mut ctx = Context::new(
        client.clone(),
        defaults,
        (
            jobs.clone(),
            sessions.clone(),
            pods.clone(),
            blueprints.clone(),
        ),
        job_index.clone(),
        metrics,
    );
    ctx.default_job_ttl_seconds = policies.default_job_ttl_seconds;
    ctx.retry_backoff_base = policies.retry_backoff_base;
    ctx.default_session_retention_seconds = policies.default_session_retention_seconds;
    ctx.governance = policies.governance;
    ctx.session_index = session_index;
    let ctx = Arc::new(ctx);
    // No reconcile runs before every store has its first full list: a session reconciled against an empty job
    // store would take its running job for deleted. Triggers sent meanwhile wait in the channels.
    let synced = {
        let (jobs, sessions) = (jobs.clone(), sessions.clone());
        async move {
            let _ = futures::join!(
                jobs.wait_until_ready(),
                sessions.wait_until_ready(),
                pods.wait_until_ready(),
                blueprints.wait_until_ready()
            );
            tracing::info!("caches synced; reconciling");
        }
        .shared()
    };
    let job_loop = {
        let (synced, ctx, shutdown) = (synced.clone(), ctx.clone(), shutdown.clone());
        async move {
            tokio::select! {
                _ = synced => {}
                _ = shutdown.clone() => return,
            }
            Controller::for_stream(stream::pending(), jobs)
                .reconcile_on(job_rx)
                .graceful_shutdown_on(shutdown)
                .run(
                    resetting("agentjob", job::reconcile),
                    error_policy("agentjob"),
                    ctx,
                )
                .for_each(|_| future::ready(()))
                .await
        }
    };
    let session_loop = {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            tokio::select! {
                _ = synced => {}
                _ = shutdown.clone() => return,
            }
            Controller::for_stream(stream::pending(), sessions)
                .reconcile_on(session_rx)
                .graceful_shutdown_on(shutdown)
                .run(
                    resetting("agentsession", session::reconcile),
                    error_policy("agentsession"),
                    ctx,
                )
                .for_each(|_| future::ready(()))
                .await
        }
    };
    let gauges = phase_gauges(ctx.clone());
    // The watches and dispatchers run for ever; the controllers end on shutdown (a controller started before the
    // caches synced ends as soon as they do, the shutdown having come first).
    let background = async {
        tokio::join!(
            dispatch_jobs,
            dispatch_sessions,
            dispatch_pods,
            blueprint_store,
            gauges
        );
    };
    let controllers = async {
        tokio::join!(job_loop, session_loop);
    };
    tokio::select! {
        _ = background => {}
        _ = controllers => {}
    }
    ctx.flush_events(std::time::Duration::from_secs(3)).await;
    tracing::info!("controllers stopped");
}

/// Keeps the jobs-by-phase gauge current from the store (cheap: a scan every few seconds).
async fn phase_gauges(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let mut counts = std::collections::HashMap::<&'static str, i64>::new();
        for job in ctx.jobs.state() {
            let phase = job
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .map(|p| p.as_str())
                .unwrap_or("Unknown");
            *counts.entry(phase).or_default() += 1;
        }
        // Failure counts of objects deleted since are dropped here, so the map stays bounded.
        if !ctx.backoff.is_empty() {
            ctx.backoff.retain(|kind, ns, name| {
                let (ns, name) = (ns.to_string(), name.to_string());
                match kind {
                    "agentjob" => ctx.jobs.get(&ObjectRef::new(&name).within(&ns)).is_some(),
                    "agentsession" => ctx.session(&ns, &name).is_some(),
                    _ => true,
                }
            });
        }
        usage_gauges(&ctx);
        for phase in ["Unknown", "Pending", "Running", "Succeeded", "Failed"] {
            let n = counts.get(phase).copied().unwrap_or(0);
            ctx.metrics
                .jobs_by_phase
                .get_or_create(&crate::metrics::PhaseLabel { phase })
                .set(n);
        }
    }
}

/// Sets the usage gauges from the sessions' status.usage, summed by namespace and blueprint. Totals read from
/// status (where each job counts once, see `domain::usage`) cannot double count across operator restarts, as
/// counters bumped at each job's end could.
fn usage_gauges(ctx: &Context) {
    use crate::metrics::{TokenLabel, UsageLabel};
    let mut totals = std::collections::BTreeMap::<(String, String), crds::Usage>::new();
    for session in ctx.sessions.state() {
        let Some(usage) = session.status.as_ref().and_then(|s| s.usage.as_ref()) else {
            continue;
        };
        let key = (
            session.metadata.namespace.clone().unwrap_or_default(),
            session.spec.blueprint.clone().unwrap_or_default(),
        );
        let sum = totals.entry(key).or_default();
        *sum = sum.plus(usage);
    }
    ctx.metrics.usage_tokens.clear();
    ctx.metrics.usage_cost.clear();
    for ((namespace, blueprint), usage) in totals {
        for (kind, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
        ] {
            ctx.metrics
                .usage_tokens
                .get_or_create(&TokenLabel {
                    namespace: namespace.clone(),
                    blueprint: blueprint.clone(),
                    kind,
                })
                .set(n);
        }
        // Prometheus values are floats; the exact sum is in the sessions' status.
        let dollars = usage.cost().0 as f64 / 1e9;
        ctx.metrics
            .usage_cost
            .get_or_create(&UsageLabel {
                namespace,
                blueprint,
            })
            .set(dollars);
    }
}
