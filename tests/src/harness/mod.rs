//! Building blocks for multi-process tests and the lab.

pub mod etcd;
pub mod failed_over;
pub mod fake_coordinator;
pub mod fleet;
pub mod net_cut;
pub mod normal_pool;
pub mod ops;
pub mod process;
pub mod sqlsim;
pub mod ssms;
pub mod stale_shipping;

use std::future::Future;
use std::time::Duration;

/// Ports this process has handed out: the OS may offer a released port again at once, and tests
/// run in parallel threads would then give two children the same port.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free TCP port on 127.0.0.1, never the same twice in this process (bound and released; the
/// child binds it soon after).
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let mut taken = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if taken.insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no unused loopback port after 100 tries")
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
