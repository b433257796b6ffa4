//! Building blocks for multi-process tests and the lab.

pub mod etcd;
pub mod fake_coordinator;
pub mod fleet;
pub mod process;
pub mod sqlsim;

use std::future::Future;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound and released; the tiny race with another process taking
/// it is acceptable on a test machine).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `deadline` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            anyhow::bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
