//! The `host` backend: facts about this host's network position. `tcp_latency` measures the TCP
//! connect round trip to an endpoint (FB-6's gate: a chat server must be in the same data center
//! as the new primary SQL, or close to it). A connect is a fair proxy for SQL round trips and needs
//! no credentials; the socket is closed at once.
//!
//! Errors: a refused or timed-out connect fails the operation (retryable: the endpoint may be
//! starting); DNS failures are not retryable.

use std::time::Duration;

use failback_proto::pb;

use crate::error::Error;

/// Per-sample connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects `samples` times to `endpoint` and reports each round trip and the median.
pub async fn tcp_latency(endpoint: &str, samples: u32) -> Result<pb::Latency, Error> {
    let addrs: Vec<_> = tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| Error::Backend {
            message: format!("cannot resolve '{endpoint}': {e}"),
            retryable: false,
        })?
        .collect();
    let addr = *addrs.first().ok_or_else(|| Error::Backend {
        message: format!("'{endpoint}' resolves to no address"),
        retryable: false,
    })?;
    let mut out = Vec::with_capacity(samples as usize);
    for _ in 0..samples {
        let start = tokio::time::Instant::now();
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let rtt = start.elapsed();
                drop(stream);
                out.push(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
            }
            Ok(Err(e)) => {
                return Err(Error::Backend {
                    message: format!("cannot connect to '{endpoint}' ({addr}): {e}"),
                    retryable: true,
                });
            }
            Err(_) => {
                return Err(Error::Backend {
                    message: format!(
                        "connect to '{endpoint}' ({addr}) timed out after {CONNECT_TIMEOUT:?}"
                    ),
                    retryable: true,
                });
            }
        }
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    Ok(pb::Latency {
        endpoint: endpoint.to_string(),
        samples_us: out,
        median_us: median,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn measures_a_listener_and_reports_a_refusal() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = l.local_addr().unwrap().to_string();
        let r = tcp_latency(&ep, 3).await.unwrap();
        assert_eq!(r.samples_us.len(), 3);
        assert!(r.median_us < 1_000_000);
        drop(l);
        let e = tcp_latency(&ep, 1).await.unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains(&ep), "{e}");
    }
}
