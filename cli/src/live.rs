//! Sessions and jobs kept current by watches (reflectors), for the commands that follow a tree (`tree -w`,
//! `logs -f`, `--wait`): they react to each change the API server sends instead of polling.

use crds::{AgentJob, AgentSession};
use futures::StreamExt;
use kube::runtime::{reflector, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::error::{CliError, Result};
use crate::snapshot::Snapshot;

pub struct Live {
    sessions: reflector::Store<AgentSession>,
    jobs: reflector::Store<AgentJob>,
    /// Bumped on every change; carries the watch's error when it fails for good.
    changes: watch::Receiver<Result<u64, String>>,
}

impl Live {
    /// Starts watching `namespace` (every namespace when None) and returns once both lists are loaded.
    pub async fn start(client: &Client, namespace: Option<&str>) -> Result<Live> {
        let (sessions, session_writer) = reflector::store();
        let (jobs, job_writer) = reflector::store();
        let (tx, changes) = watch::channel(Ok(0));
        let session_api: Api<AgentSession> = api(client, namespace);
        let job_api: Api<AgentJob> = api(client, namespace);
        let session_events = reflector(session_writer, watcher(session_api, Default::default()))
            .map(|e| e.map(|_| ()));
        let job_events =
            reflector(job_writer, watcher(job_api, Default::default())).map(|e| e.map(|_| ()));
        let mut events = futures::stream::select(session_events, job_events).boxed();
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(event) = events.next().await {
                match event {
                    Ok(()) => {
                        n += 1;
                        let _ = tx.send(Ok(n));
                    }
                    // 403 and 404 do not heal by retrying: the command stops with the API server's message.
                    Err(watcher::Error::InitialListFailed(kube::Error::Api(s)))
                    | Err(watcher::Error::WatchStartFailed(kube::Error::Api(s)))
                        if s.code == 403 || s.code == 404 =>
                    {
                        let _ = tx.send(Err(format!("watching: {}", s.message)));
                        return;
                    }
                    // Anything else (a dropped connection) is retried by the watcher after a pause.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                }
            }
        });
        let live = Live {
            sessions,
            jobs,
            changes,
        };
        // A watch that fails for good drops its store's writer, which ends the wait.
        let ready = futures::future::try_join(
            live.sessions.wait_until_ready(),
            live.jobs.wait_until_ready(),
        );
        if ready.await.is_err() {
            let e = live.changes.borrow().clone().err();
            return Err(CliError::Other(
                e.unwrap_or_else(|| "the watch ended".into()),
            ));
        }
        Ok(live)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sessions: self
                .sessions
                .state()
                .iter()
                .map(|s| (**s).clone())
                .collect(),
            jobs: self.jobs.state().iter().map(|j| (**j).clone()).collect(),
        }
    }

    /// Waits for the next change.
    pub async fn changed(&mut self) -> Result<()> {
        self.changes
            .changed()
            .await
            .map_err(|_| CliError::Other("the watch ended".into()))?;
        match &*self.changes.borrow() {
            Ok(_) => Ok(()),
            Err(e) => Err(CliError::Other(e.clone())),
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
