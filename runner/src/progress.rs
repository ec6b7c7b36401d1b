//! Usage reports while the agent runs: every few seconds, when the usage changed, the runner posts it to the
//! gateway (the result endpoint with `"progress": true`), so that a tree's budget is enforced while its agents
//! spend, not only when they end.

use std::time::Duration;

use crds::Usage;
use tokio::task::JoinHandle;

use crate::report::{self, Reported, Retry};

/// How often the usage is looked at; a change is reported at the next look (the contract is "at least every 10 s
/// when it changed").
pub const EVERY: Duration = Duration::from_secs(5);

/// Reports running in the background until `stop`.
pub struct Reporter(Option<JoinHandle<()>>);

impl Reporter {
    /// Starts reporting what `now` says to `url` (nothing when there is no gateway).
    pub fn start(
        url: Option<String>,
        token: Option<String>,
        now: impl Fn() -> Option<Usage> + Send + 'static,
    ) -> Reporter {
        let Some(url) = url else {
            return Reporter(None);
        };
        Reporter(Some(tokio::spawn(async move {
            let mut sent: Option<Usage> = None;
            let retry = Retry {
                first_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(1),
                budget: Duration::from_secs(3),
            };
            loop {
                tokio::time::sleep(EVERY).await;
                let Some(usage) = now().filter(|u| sent.as_ref() != Some(u)) else {
                    continue;
                };
                match report::post(
                    &url,
                    token.as_deref(),
                    &report::progress_body(&usage),
                    &retry,
                )
                .await
                {
                    Reported::Accepted => sent = Some(usage),
                    Reported::Refused(code, why) => {
                        tracing::warn!(%url, code, %why, "the gateway refused a usage report")
                    }
                    Reported::GaveUp(why) => {
                        tracing::warn!(%url, %why, "a usage report did not get through; trying again later")
                    }
                }
            }
        })))
    }

    /// Stops reporting: the final report (with the result) carries the last usage.
    pub async fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            let _ = task.await;
        }
    }
}
