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

/// A plain HTTP/1.1 GET on 127.0.0.1 (the `/metrics` listeners): the whole response, headers
/// included.
pub async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// The sum of every sample of metric `name` (all label sets) in a Prometheus text body.
pub fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn metric_sum_adds_every_label_set_of_one_metric_only() {
        let body = "# HELP failback_agent_session_errors Agent sessions refused\n\
# TYPE failback_agent_session_errors counter\n\
failback_agent_session_errors_total{reason=\"not_leader\"} 12\n\
failback_agent_session_errors_total{reason=\"protocol\"} 1\n\
failback_agent_session_errors_total_other 100\n\
failback_agent_heartbeats_total 7\n";
        assert_eq!(
            metric_sum(body, "failback_agent_session_errors_total"),
            13.0
        );
        assert_eq!(metric_sum(body, "failback_agent_heartbeats_total"), 7.0);
        assert_eq!(metric_sum(body, "missing"), 0.0);
    }
}
