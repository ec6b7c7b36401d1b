//! `make bench`: runs the benchmarks of `e2e::bench` against the local control plane and prints their figures with
//! the targets they are held to. Arguments choose benchmarks (`lifecycle`, `callbacks`, `gateway`,
//! `handover`, `dashboard`, `scale`, `tracing`); none: all.

use e2e::agents::install_crds;
use e2e::bench::{callbacks, dashboard, gateway, handover, lifecycle, scale, tracing};

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[tokio::main]
async fn main() {
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| chosen.is_empty() || chosen.iter().any(|c| c == name);
    let client = e2e::client().await;
    install_crds(&client).await;
    if wants("lifecycle") {
        print_lifecycle(&client).await;
    }
    if wants("callbacks") || wants("callbacks-serial") {
        print_callbacks(&client).await;
    }
    if wants("gateway") {
        print_gateway(&client).await;
    }
    if wants("handover") {
        print_handover(&client).await;
    }
    if wants("dashboard") {
        print_dashboard(&client).await;
    }
    if wants("scale") {
        print_scale(&client).await;
    }
    if wants("tracing") {
        print_tracing(&client).await;
    }
}

async fn print_dashboard(client: &kube::Client) {
    let rounds = dashboard::render(client).await;
    let median = |f: fn(&dashboard::Render) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\n== dashboard: {} sessions in one namespace, headless chromium (median of {} page loads) ==",
        dashboard::SESSIONS,
        dashboard::ROUNDS
    );
    println!(
        "whole tree in the page after navigation {:>8.0} ms",
        median(|r| r.since_navigation_ms)
    );
    let painted = median(|r| r.painted_ms);
    println!(
        "  and painted                           {painted:>8.0} ms (target <= 1000 ms: {})",
        verdict(painted <= 1000.0)
    );
    println!(
        "  of which from the snapshot's arrival  {:>8.0} ms",
        median(|r| r.snapshot_to_render_ms)
    );
    let filter = median(|r| r.filter_ms);
    println!(
        "a phase filter, input to next frame     {filter:>8.0} ms (target <= 200 ms: {})",
        verdict(filter <= 200.0)
    );
}

async fn print_scale(client: &kube::Client) {
    let small = scale::scale(client, scale::BASELINE).await;
    let large = scale::scale(client, scale::sessions()).await;
    println!(
        "\n== scale: {} sessions, each with a finished Start job and its Pod, against {} (median of {} rounds) ==",
        large.sessions,
        small.sessions,
        scale::ROUNDS
    );
    println!(
        "made {} sessions, jobs and Pods in {:.1} s; the operator settled {:.1} s after its start, with {:.0} writes",
        large.sessions,
        large.created_in.as_secs_f64(),
        large.settled_in.as_secs_f64(),
        large.settling_writes
    );
    println!(
        "operator RSS settled {:>7.1} MiB (goal < 150 MiB: {})   peak {:>7.1} MiB (goal < 150 MiB: {})   at {}: settled {:.1} MiB, peak {:.1} MiB",
        large.settled_rss_mib,
        verdict(large.settled_rss_mib < 150.0),
        large.peak_rss_mib,
        verdict(large.peak_rss_mib < 150.0),
        small.sessions,
        small.settled_rss_mib,
        small.peak_rss_mib
    );
    for (what, at_small, at_large) in [
        (
            "one new job, created to Succeeded",
            small.new_job,
            large.new_job,
        ),
        (
            "one callback, child Pod Succeeded to Resume Pod",
            small.callback,
            large.callback,
        ),
    ] {
        let ratio = at_large.as_secs_f64() / at_small.as_secs_f64();
        println!(
            "{what:<48} {:>7.1} ms at {}, {:>7.1} ms at {} = {ratio:.2}x (goal <= 1.5x: {})",
            ms(at_small),
            small.sessions,
            ms(at_large),
            large.sessions,
            verdict(ratio <= 1.5)
        );
    }
    for f in [&small, &large] {
        let after = f.after_restart.as_secs_f64();
        println!(
            "after a kube-apiserver restart, at {:>6} sessions: a new job's Pod {after:.2} s after /readyz (goal <= 3 s: {})",
            f.sessions,
            verdict(after <= 3.0)
        );
    }
}

async fn print_tracing(client: &kube::Client) {
    let f = tracing::tracing(client).await;
    let n = lifecycle::N;
    println!(
        "\n== tracing: the operator exporting over OTLP against tracing off; each side the mean of {} runs, in the order off, jaeger, discard, discard, jaeger, off, {} times ==",
        2 * tracing::REPEATS,
        tracing::REPEATS
    );
    println!(
        "   discard: a receiver that keeps nothing (the operator's own cost; target: within 10% of off); jaeger: a real Jaeger on the same two cores"
    );
    let within = |off: f64, on: f64| on <= off * 1.10;
    let pct = |off: f64, on: f64| (on / off - 1.0) * 100.0;
    let (off, jaeger, discard) = (
        f.off.burst_done.as_secs_f64(),
        f.jaeger.burst_done.as_secs_f64(),
        f.discard.burst_done.as_secs_f64(),
    );
    println!(
        "{n}-job burst, all Succeeded   off {off:>8.2} s   discard {discard:>8.2} s ({:+.1}%, target <= +10%: {})   jaeger {jaeger:>8.2} s ({:+.1}%)",
        pct(off, discard),
        verdict(within(off, discard)),
        pct(off, jaeger)
    );
    // A figure without a target: each side, and the traced sides against off.
    let compared = |label: &str, of: fn(&tracing::Side) -> f64| {
        let (off, jaeger, discard) = (of(&f.off), of(&f.jaeger), of(&f.discard));
        println!(
            "{label:<30} off {off:>8.2} s   discard {discard:>8.2} s ({:+.1}%)                       jaeger {jaeger:>8.2} s ({:+.1}%)",
            pct(off, discard),
            pct(off, jaeger)
        );
    };
    compared(&format!("{n}-job burst, all Pods exist"), |s| {
        s.burst_pods.as_secs_f64()
    });
    let runs = |side: &tracing::Side| {
        let each: Vec<String> = side
            .burst_runs
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect();
        each.join(", ")
    };
    println!(
        "   runs, all Succeeded (s)     off {}   discard {}   jaeger {}",
        runs(&f.off),
        runs(&f.discard),
        runs(&f.jaeger)
    );
    compared("operator CPU in the burst", |s| s.burst_cpu.as_secs_f64());
    println!(
        "operator peak RSS             off {:>8.1} MiB discard {:>8.1} MiB                                jaeger {:>8.1} MiB",
        f.off.peak_rss_mib, f.discard.peak_rss_mib, f.jaeger.peak_rss_mib
    );
    for (q, label) in [(50.0, "p50"), (99.0, "p99")] {
        let (off, jaeger, discard) = (
            ms(f.off.latency.p(q)),
            ms(f.jaeger.latency.p(q)),
            ms(f.discard.latency.p(q)),
        );
        println!(
            "callback latency {label} (50/s)   off {off:>8.1} ms discard {discard:>8.1} ms ({:+.1}%, target <= +10%: {})  jaeger {jaeger:>8.1} ms ({:+.1}%)",
            pct(off, discard),
            verdict(within(off, discard)),
            pct(off, jaeger)
        );
    }
    println!(
        "operator spans in Jaeger after the traced runs: {}; exports answered by the discarding receiver: {}",
        f.exported_spans, f.discarded_exports
    );
}

async fn print_handover(client: &kube::Client) {
    let figures = handover::handover(client).await;
    let lease = handover::LEASE_SECONDS;
    println!(
        "\n== leader hand-over: two replicas, {lease} s Lease; from the signal to the standby holding the Lease ({} rounds each) ==",
        handover::ROUNDS
    );
    let worst = |d: &[std::time::Duration]| d.iter().max().copied().unwrap_or_default();
    let (term_p50, term_max) = (
        e2e::bench::percentile(&figures.sigterm, 50.0),
        worst(&figures.sigterm),
    );
    println!(
        "SIGTERM (lease released)  p50 {:>8.1} ms  max {:>8.1} ms (goal <= 1000 ms: {})",
        ms(term_p50),
        ms(term_max),
        verdict(ms(term_max) <= 1000.0)
    );
    let (kill_p50, kill_max) = (
        e2e::bench::percentile(&figures.sigkill, 50.0),
        worst(&figures.sigkill),
    );
    let target = (lease + 2) as f64 * 1000.0;
    println!(
        "SIGKILL (lease expires)   p50 {:>8.1} ms  max {:>8.1} ms (target <= {target:.0} ms, the lease + 2 s: {})",
        ms(kill_p50),
        ms(kill_max),
        verdict(ms(kill_max) <= target)
    );
}

async fn print_lifecycle(client: &kube::Client) {
    use lifecycle::{COMPLETION_DELAY, N};
    let ours = lifecycle::lifecycle(client).await;
    let theirs = lifecycle::job_controller(client).await;
    let delay = COMPLETION_DELAY.as_secs_f64();
    println!("\n== lifecycle: {N} Start AgentJobs at once (Pods finish {delay}s after start) ==");
    println!(
        "all {N} Pods exist after            {:>8.2} s   (target <= 10 s: {})",
        ours.pods.as_secs_f64(),
        verdict(ours.pods.as_secs_f64() <= 10.0)
    );
    let beyond = ours.done.saturating_sub(COMPLETION_DELAY).as_secs_f64();
    println!(
        "all {N} jobs Succeeded after        {:>8.2} s   = delay + {beyond:.2} s (target <= delay + 20 s: {})",
        ours.done.as_secs_f64(),
        verdict(beyond <= 20.0)
    );
    println!(
        "operator peak RSS                   {:>8.1} MiB (target < 100 MiB: {})",
        ours.peak_rss_mib,
        verdict(ours.peak_rss_mib < 100.0)
    );
    let w = &ours.writes;
    println!(
        "API writes per job (apiserver)      {:>8.2}     (state {:.2}: sessions {:.2}, job status {:.2}, pods {:.2}; events {:.2})",
        w.total_per_job(),
        w.state_per_job(),
        w.sessions,
        w.job_status,
        w.pods,
        w.events,
    );
    println!(
        "state writes per job                {:>8.2}     (target <= 5: {}; 6 by design, each a transition people see: \
         session made, Running, Idle; job Running, Succeeded; the Pod)",
        w.state_per_job(),
        verdict(w.state_per_job() <= 5.0)
    );
    println!(
        "Events per job                      {:>8.2}     (target <= 2: {})",
        w.events,
        verdict(w.events <= 2.0)
    );
    println!(
        "API writes per job (operator count) {:>8.2}",
        ours.self_reported_writes / N as f64
    );
    println!("\n== built-in Job controller: {N} batch/v1 Jobs, same cluster, same delay ==");
    println!(
        "all {N} Pods exist after            {:>8.2} s",
        theirs.pods.as_secs_f64()
    );
    println!(
        "all {N} Jobs complete after         {:>8.2} s",
        theirs.done.as_secs_f64()
    );
    let ratio = theirs.pods.as_secs_f64() / ours.pods.as_secs_f64();
    println!(
        "\nratio (Job controller / operator): Pods exist {ratio:.1}x, all done {:.1}x (target >= 6x: {})",
        theirs.done.as_secs_f64() / ours.done.as_secs_f64(),
        verdict(ratio >= 6.0)
    );
}

async fn print_callbacks(client: &kube::Client) {
    println!(
        "\n== callback latency: {} idle parents, one child each (child Pod Succeeded -> parent Resume Pod created) ==",
        callbacks::PARENTS
    );
    let paced = std::time::Duration::from_millis(20);
    let paces = [
        ("one at a time", callbacks::Pace::OneAtATime),
        ("50 per second", callbacks::Pace::Every(paced)),
    ];
    // `bench callbacks-serial`: only the first (a quick look at one callback's path).
    let serial_only = std::env::args().any(|a| a == "callbacks-serial");
    for (what, pace) in paces.into_iter().take(if serial_only { 1 } else { 2 }) {
        let latency = callbacks::latency(client, pace).await;
        let (p50, p99) = (ms(latency.p(50.0)), ms(latency.p(99.0)));
        let max = ms(latency.p(100.0));
        match pace {
            callbacks::Pace::OneAtATime => println!(
                "{what:<14} p50 {p50:>7.1} ms (target <= 24 ms: {})  p99 {p99:>7.1} ms (target <= 100 ms: {})  max {max:>7.1} ms",
                verdict(p50 <= 24.0),
                verdict(p99 <= 100.0),
            ),
            callbacks::Pace::Every(_) => println!(
                "{what:<14} p50 {p50:>7.1} ms                        p99 {p99:>7.1} ms (target <= 250 ms: {})  max {max:>7.1} ms",
                verdict(p99 <= 250.0),
            ),
        }
    }
    // What one callback is made of: the operator's path from the child's end to the Resume Pod is six API round
    // trips in a row (the child's status, a fresh read of it, the queue, the marks with the delivery job, the
    // session's status, the Pod) and three watch hops; one round trip on this machine:
    let unit = callbacks::status_write_round_trip(client, 100).await;
    println!(
        "one status write (server-side apply), alone: p50 {:>5.1} ms  p99 {:>5.1} ms; a callback's path has 6 round trips in a row and 3 watch hops",
        ms(unit.p(50.0)),
        ms(unit.p(99.0))
    );

    if serial_only {
        return;
    }
    let fan = callbacks::fan_out(client).await;
    println!(
        "\n== fan-out: {} children of one parent finish at once ==",
        callbacks::FAN_OUT
    );
    let after = fan.delivered_after_last_child.as_secs_f64();
    println!(
        "all callbacks delivered {after:.2} s after the last child (target <= 5 s: {})",
        verdict(after <= 5.0)
    );
    println!("Resume jobs used: {}", fan.resume_jobs);
    let exactly_once =
        fan.distinct_delivered == callbacks::FAN_OUT && fan.deliveries_total == callbacks::FAN_OUT;
    println!(
        "children carried: {} distinct in {} entries (exactly once: {})",
        fan.distinct_delivered,
        fan.deliveries_total,
        if exactly_once { "yes" } else { "NO" }
    );
}

async fn print_gateway(client: &kube::Client) {
    let figures = gateway::latency(client).await;
    let lean = &figures.lean;
    let p = e2e::bench::mcp_load::Load::p;
    println!(
        "\n== gateway: {} concurrent clients, {} calls each of start (async) and status (lean Rust client) ==",
        gateway::CLIENTS,
        gateway::CALLS
    );
    println!(
        "start_agent_session       p50 {:>7.2} ms  p99 {:>7.2} ms (target p99 < 50 ms: {})",
        p(&lean.start, 50.0),
        p(&lean.start, 99.0),
        verdict(p(&lean.start, 99.0) < 50.0)
    );
    println!(
        "get_agent_session_status  p50 {:>7.2} ms  p99 {:>7.2} ms (target p99 < 10 ms: {})",
        p(&lean.status, 50.0),
        p(&lean.status, 99.0),
        verdict(p(&lean.status, 99.0) < 10.0)
    );
    println!(
        "calls per second {:.0}   errors {}{}",
        lean.calls() as f64 / lean.elapsed.as_secs_f64(),
        lean.errors.len(),
        lean.errors
            .first()
            .map(|e| format!("   first: {e}"))
            .unwrap_or_default()
    );
    let worst = figures
        .status_waits
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    println!(
        "status wait answered after the job ended (Python client, its exit included): p50 {:>7.1} ms  max {:>7.1} ms ({} waits; target < 10 s: {})",
        ms(e2e::bench::percentile(&figures.status_waits, 50.0)),
        ms(worst),
        figures.status_waits.len(),
        verdict(worst < std::time::Duration::from_secs(10))
    );
    let r = &figures.report;
    let p = |tool: &str, q: &str| r[tool][q].as_f64().unwrap_or(f64::NAN);
    println!(
        "\n== the same with the official MCP Python SDK (client-side times, the Python client's work included) =="
    );
    let (start99, status99) = (
        p("start_agent_session", "p99_ms"),
        p("get_agent_session_status", "p99_ms"),
    );
    println!(
        "start_agent_session       p50 {:>7.2} ms  p99 {start99:>7.2} ms (target p99 < 50 ms: {})",
        p("start_agent_session", "p50_ms"),
        verdict(start99 < 50.0)
    );
    println!(
        "get_agent_session_status  p50 {:>7.2} ms  p99 {status99:>7.2} ms (target p99 < 10 ms: {})",
        p("get_agent_session_status", "p50_ms"),
        verdict(status99 < 10.0)
    );
    println!(
        "calls per second {}   errors {}   gateway peak RSS {:.1} MiB",
        r["calls_per_second"], r["errors"], figures.gateway_peak_rss_mib
    );
    if let Some(e) = r["first_error"].as_str() {
        println!("first error: {e}");
    }
}
