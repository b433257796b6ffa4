//! A TCP link that a test can cut and heal: a loopback proxy in front of one address, standing
//! in for the network path between a coordinator and one etcd member (issue #12, "a coordinator
//! cut off from etcd but still reaching the agents").
//!
//! Decided: a proxy, not network namespaces with veth pairs. A user namespace would make them
//! possible without root (as `scenario/volume.rs` does for a small share volume), but the whole
//! fleet would then run off plain loopback, behind iproute2 set up inside the namespace, for no
//! difference the coordinator could see: its etcd connections go silent (no RST, no FIN, as
//! when a switch or firewall drops the packets) while its agents' connections keep working.
//! While cut, bytes are neither read nor forwarded, and new connections are accepted and left
//! silent (the SYN answered, nothing after: what a client behind a stateful firewall that lost
//! its route sees as a timeout). Healing closes every connection held during the cut, so the
//! client reconnects, as it would after a partition long enough for keep-alives to give up.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One cuttable link; the proxy stops when it is dropped.
pub struct Link {
    /// The proxy's address (what the client is given instead of the target).
    pub addr: SocketAddr,
    cut: std::sync::Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts a proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, rx) = watch::channel(false);
        let task = tokio::spawn(accept(listener, target, rx));
        Ok(Link {
            addr,
            cut: std::sync::Arc::new(cut),
            task,
        })
    }

    /// Cuts the link: open connections go silent, new ones are held silent.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Cuts the link and heals it `d` later on a timer of its own, so the outage lasts `d`
    /// whatever the caller is busy with then.
    pub fn cut_for(&self, d: std::time::Duration) {
        self.cut();
        let cut = self.cut.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            cut.send_replace(false);
        });
    }

    /// Heals it: connections held during the cut are closed, new ones forward again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Whether it is cut now.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        conns.retain(|c| !c.is_finished());
        let cut = cut.clone();
        conns.push(tokio::spawn(async move {
            if *cut.borrow() {
                hold_until_healed(cut).await;
                drop(inbound);
                return;
            }
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            let up = tokio::spawn(pump(ir, ow, cut.clone()));
            let down = tokio::spawn(pump(or, iw, cut));
            let _ = tokio::join!(up, down);
        }));
    }
}

/// Waits for the link to heal (or for the proxy to stop).
async fn hold_until_healed(mut cut: watch::Receiver<bool>) {
    let _ = cut.wait_for(|c| !*c).await;
}

/// Copies `from` to `to` until either side ends; while the link is cut it copies nothing, and
/// once healed it ends the connection.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *cut.borrow_and_update() {
            hold_until_healed(cut).await;
            return;
        }
        tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = cut.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut b = [0u8; 4];
        match tokio::time::timeout(within, s.read_exact(&mut b)).await {
            Ok(Ok(_)) => Some(b.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_cut_link_is_silent_and_a_healed_one_forwards_again() {
        let link = Link::start(echo_server().await).await.unwrap();
        let mut c = TcpStream::connect(link.addr).await.unwrap();
        assert_eq!(
            echo(&mut c, Duration::from_secs(5)).await.as_deref(),
            Some(&b"ping"[..])
        );
        link.cut();
        assert!(link.is_cut());
        assert_eq!(echo(&mut c, Duration::from_millis(300)).await, None);
        let mut during = TcpStream::connect(link.addr).await.unwrap();
        assert_eq!(echo(&mut during, Duration::from_millis(300)).await, None);
        link.heal();
        // Connections held during the cut are closed; a new one forwards.
        let mut b = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        let mut after = TcpStream::connect(link.addr).await.unwrap();
        assert_eq!(
            echo(&mut after, Duration::from_secs(5)).await.as_deref(),
            Some(&b"ping"[..])
        );
    }
}
