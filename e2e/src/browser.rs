//! A real browser for the dashboard's tests: Debian's chromium, headless, driven by Playwright through
//! e2e/browser/driver.cjs (`make browser-env` installs the pinned playwright-core into .local/browser). Each
//! command is one JSON line to the driver and one JSON answer back; the browser closes when this is dropped.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::workspace_root;

pub struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Where the tests write their screenshots, for a person to look at.
pub fn screenshot_dir() -> PathBuf {
    let dir = workspace_root().join(".local/screenshots");
    std::fs::create_dir_all(&dir).expect("create .local/screenshots");
    dir
}

impl Browser {
    pub async fn start() -> Browser {
        let env = workspace_root().join(".local/browser");
        assert!(
            env.join("node_modules/playwright-core").exists(),
            "no playwright-core in {}: run `make browser-env`",
            env.display()
        );
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists(),
            "no /usr/bin/chromium: apt-get install -y --no-install-recommends chromium"
        );
        let mut child = Command::new("node")
            .arg(workspace_root().join("e2e/browser/driver.cjs"))
            .env("BROWSER_ENV", &env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node e2e/browser/driver.cjs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Browser {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// Runs one driver command; Err carries the driver's error (and the page's recent console lines).
    pub async fn try_run(&mut self, command: Value) -> Result<Value, String> {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the browser driver");
        let answer = self
            .stdout
            .next_line()
            .await
            .expect("read the browser driver")
            .expect("the browser driver exited");
        let answer: Value = serde_json::from_str(&answer).expect("the driver answers JSON");
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{}; page log: {}", answer["error"], answer["log"]))
        }
    }

    /// Runs one driver command, failing the test with the driver's error.
    pub async fn run(&mut self, command: Value) -> Value {
        let what = command.to_string();
        self.try_run(command)
            .await
            .unwrap_or_else(|e| panic!("browser command {what} failed: {e}"))
    }

    pub async fn goto(&mut self, url: &str) {
        self.run(json!({"op": "goto", "url": url})).await;
    }

    /// Waits (up to `timeout_ms`) for `selector` to be visible.
    pub async fn wait_for(&mut self, selector: &str, timeout_ms: u64) {
        self.run(json!({"op": "waitFor", "selector": selector, "timeout": timeout_ms}))
            .await;
    }

    /// Waits (up to `timeout_ms`) until the page expression `expr` is truthy; its value.
    pub async fn wait_until(&mut self, expr: &str, timeout_ms: u64) -> Value {
        self.run(json!({"op": "waitForFunction", "expr": expr, "timeout": timeout_ms}))
            .await
    }

    pub async fn eval(&mut self, expr: &str) -> Value {
        self.run(json!({"op": "eval", "expr": expr})).await
    }

    pub async fn fill(&mut self, selector: &str, value: &str) {
        self.run(json!({"op": "fill", "selector": selector, "value": value}))
            .await;
    }

    pub async fn click(&mut self, selector: &str) {
        self.run(json!({"op": "click", "selector": selector})).await;
    }

    pub async fn text(&mut self, selector: &str) -> String {
        self.run(json!({"op": "text", "selector": selector}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A full-page screenshot into .local/screenshots/NAME.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(name);
        self.run(json!({"op": "screenshot", "path": path})).await;
        path
    }

    /// A screenshot of what the window shows (a long page's rows off screen are not painted until scrolled to:
    /// the dashboard's tree skips them with content-visibility, so a full-page capture would show them blank).
    pub async fn screenshot_window(&mut self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(name);
        self.run(json!({"op": "screenshot", "path": path, "fullPage": false}))
            .await;
        path
    }
}
