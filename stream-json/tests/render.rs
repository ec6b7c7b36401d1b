//! The rendering of recorded stream-json, compared with the text a person should read. Regenerate an expected file
//! after an intended change with `UPDATE_FIXTURES=1 cargo test -p agent-stream`.

use std::path::PathBuf;

use agent_stream::{Rendering, Transcript, render_line};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn rendered(stream: &str, rendering: Rendering) -> String {
    let mut out: String = stream
        .lines()
        .filter_map(|l| render_line(l, rendering))
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

fn check(stream: &str, expected: &str, rendering: Rendering) {
    let text = std::fs::read_to_string(fixture(stream)).expect("fixture");
    let got = rendered(&text, rendering);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(fixture(expected), &got).expect("write expected");
    }
    let want = std::fs::read_to_string(fixture(expected)).expect("expected rendering");
    assert_eq!(got, want, "rendering of {stream} differs from {expected}");
}

#[test]
fn an_orchestrator_run_reads_as_text_tool_calls_results_and_the_result() {
    check(
        "orchestrator.jsonl",
        "orchestrator.txt",
        Rendering::default(),
    );
}

#[test]
fn full_shows_tool_results_whole() {
    check(
        "orchestrator.jsonl",
        "orchestrator-full.txt",
        Rendering { full: true },
    );
}

#[test]
fn a_failed_model_call_reads_as_its_error() {
    check("api-error.jsonl", "api-error.txt", Rendering::default());
}

#[test]
fn the_transcript_of_a_recorded_run_has_its_session_and_result() {
    let mut t = Transcript::default();
    for line in std::fs::read_to_string(fixture("api-error.jsonl"))
        .unwrap()
        .lines()
    {
        t.observe(line);
    }
    assert_eq!(
        t.session_id.as_deref(),
        Some("5e0c2a77-1d2b-4f0e-9c3a-6b8d1e2f3a44")
    );
    let (text, is_error) = t.result.expect("a result");
    assert!(is_error);
    assert!(text.contains("scripted failure for the test"), "{text}");
}

/// Recorded from the real Claude Code CLI (2.1.328) in the README's example tree: the planner's first job (two
/// start_agent_session calls) and its callback resume; the runner's own log lines are in the stream too and are no
/// messages.
#[test]
fn recorded_planner_runs_read_as_their_tool_calls_and_results() {
    check(
        "recorded-planner-start.jsonl",
        "recorded-planner-start.txt",
        Rendering::default(),
    );
    check(
        "recorded-planner-resume.jsonl",
        "recorded-planner-resume.txt",
        Rendering::default(),
    );
    let mut t = Transcript::default();
    for line in std::fs::read_to_string(fixture("recorded-planner-start.jsonl"))
        .unwrap()
        .lines()
    {
        t.observe(line);
    }
    assert_eq!(
        t.session_id.as_deref(),
        Some("8abc421b-e33a-4384-81c6-c95d171aa251")
    );
    assert_eq!(
        t.result,
        Some((
            "(local stand-in model) I started 2 child sessions; I continue when they report back."
                .into(),
            false
        ))
    );
}
