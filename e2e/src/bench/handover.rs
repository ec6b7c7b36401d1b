//! Leader hand-over: two operator replicas elect a leader through their Lease (4 s, as in the e2e tests); the
//! leader is stopped and the time is taken from the signal until the API server's Lease names the standby. With
//! SIGTERM the leader releases the Lease as it exits; with SIGKILL the standby must wait for the lease to expire.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};

use super::fresh_namespace;
use crate::operator::{LEASE, Operator, Options, lease_holder};

/// Hand-overs measured per way of stopping the leader.
pub const ROUNDS: usize = 3;
/// The Lease duration of the replicas (seconds).
pub const LEASE_SECONDS: u64 = 4;

pub struct Figures {
    pub sigterm: Vec<Duration>,
    pub sigkill: Vec<Duration>,
}

#[derive(Clone, Copy)]
enum Stop {
    Term,
    Kill,
}

pub async fn handover(client: &Client) -> Figures {
    let ns = "bench-handover";
    fresh_namespace(client, ns).await;
    let options = |id: &str| Options {
        leader_election: true,
        identity: Some(id.into()),
        ..Default::default()
    };
    let mut replicas = [
        Operator::start_with(ns, options("replica-a")).await,
        Operator::start_with(ns, options("replica-b")).await,
    ];
    let mut figures = Figures {
        sigterm: Vec::new(),
        sigkill: Vec::new(),
    };
    for stop in [Stop::Term; ROUNDS].into_iter().chain([Stop::Kill; ROUNDS]) {
        let taken = stop_the_leader(client, ns, &mut replicas, stop).await;
        match stop {
            Stop::Term => figures.sigterm.push(taken),
            Stop::Kill => figures.sigkill.push(taken),
        }
    }
    figures
}

/// Stops the current leader, returns the time until the Lease names the other replica, and starts the stopped
/// one again as the new standby.
async fn stop_the_leader(
    client: &Client,
    ns: &str,
    replicas: &mut [Operator; 2],
    stop: Stop,
) -> Duration {
    let holder = crate::eventually("a Lease holder", Duration::from_secs(30), || async {
        lease_holder(client, ns).await
    })
    .await;
    let leader = replicas
        .iter()
        .position(|r| r.identity == holder)
        .unwrap_or_else(|| panic!("the Lease is held by {holder}, not a replica"));
    let standby = replicas[1 - leader].identity.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    match stop {
        Stop::Term => replicas[leader].terminate(),
        Stop::Kill => replicas[leader].kill(),
    }
    let is_standby = move |l: Option<&Lease>| {
        l.and_then(|l| l.spec.as_ref()?.holder_identity.as_deref()) == Some(standby.as_str())
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(leases, LEASE, is_standby),
    )
    .await
    .expect("the standby to hold the Lease within 60 s")
    .expect("watching the Lease");
    let taken = started.elapsed();
    if let Stop::Term = stop {
        let status = replicas[leader].exit_status(Duration::from_secs(30)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "the leader's exit on SIGTERM: {status}"
        );
    }
    replicas[leader].restart().await;
    taken
}
