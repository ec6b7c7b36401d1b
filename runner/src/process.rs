//! Runs the agent process: the prompt on its standard input, its output streamed line by line to the Pod log (and
//! to the caller), the end of its error output kept for the error text, and SIGTERM passed on so that deleting the
//! job stops the agent cleanly.

use std::io::Write;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

use crate::outcome::Exit;

/// How much of the agent's error output is kept for the error text.
const STDERR_TAIL_BYTES: usize = 4096;

/// Runs `cmd` to its end. `on_line` sees every line of its standard output (already copied to ours).
/// Returns how it ended and the tail of its error output (also copied to ours as it comes).
pub async fn run(
    mut cmd: Command,
    stdin_text: &str,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<(Exit, String)> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id();

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let prompt = stdin_text.to_string();
    let feeder = tokio::spawn(async move {
        // An agent that exits without reading its input closes the pipe: not an error of ours.
        let _ = stdin.write_all(prompt.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });

    let mut stderr = child.stderr.take().expect("stderr is piped");
    let tail = tokio::spawn(async move {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > STDERR_TAIL_BYTES {
                        tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                    }
                }
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = Vec::new();
    let mut stdout_open = true;
    let status = loop {
        tokio::select! {
            read = stdout.read_until(b'\n', &mut line), if stdout_open => {
                match read {
                    Ok(0) | Err(_) => stdout_open = false,
                    Ok(_) => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&line);
                        let _ = out.flush();
                        drop(out);
                        let text = String::from_utf8_lossy(&line);
                        on_line(text.trim_end_matches(['\n', '\r']));
                        line.clear();
                    }
                }
            }
            status = child.wait(), if !stdout_open => break status?,
            _ = terminate.recv() => forward(pid, "SIGTERM"),
            _ = interrupt.recv() => forward(pid, "SIGINT"),
        }
    };
    let _ = feeder.await;
    let stderr_tail = tail.await.unwrap_or_default();
    Ok((Exit::from(status), stderr_tail))
}

/// Passes a stop signal on to the agent, which then ends on its own terms (and its end is reported as usual).
fn forward(pid: Option<u32>, name: &str) {
    let Some(pid) = pid else { return };
    tracing::info!(
        pid,
        signal = name,
        "passing the stop signal on to the agent"
    );
    let signal = if name == "SIGINT" {
        libc::SIGINT
    } else {
        libc::SIGTERM
    };
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_lines_feeds_stdin_and_keeps_the_stderr_tail() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "read p; echo \"got $p\"; echo second; echo oops >&2; exit 3",
        ]);
        let mut lines = Vec::new();
        let (exit, tail) = run(cmd, "hello\n", |l| lines.push(l.to_string()))
            .await
            .unwrap();
        assert_eq!(lines, ["got hello", "second"]);
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(tail, "oops\n");
    }

    #[tokio::test]
    async fn a_killed_agent_reports_its_signal() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -9 $$"]);
        let (exit, _) = run(cmd, "", |_| {}).await.unwrap();
        assert_eq!(exit, Exit::Signal(9));
    }

    #[tokio::test]
    async fn an_agent_that_ignores_its_input_is_fine() {
        let big = "x".repeat(1 << 20);
        let mut cmd = Command::new("true");
        cmd.arg("ignored");
        let (exit, _) = run(cmd, &big, |_| {}).await.unwrap();
        assert_eq!(exit, Exit::Code(0));
    }
}
