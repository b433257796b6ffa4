//! Leadership through an etcd election (DESIGN §4; tds-and-crates.md §4 for the etcd-client API
//! against etcd 3.4 and the phantom-leadership gotcha).
//!
//! One task runs the campaign loop, term after term, until shutdown:
//! 1. grant a lease (TTL = `lease_ttl`) and start keeping it alive *before* campaigning, so a
//!    candidate that waits a long time in the queue never holds an expired lease;
//! 2. `campaign("/failback/<cluster>/leader", <advertised endpoint>, lease)`;
//! 3. confirm with a transaction that the returned leader key still exists with the returned
//!    create revision (etcd can hand out leadership for a key whose lease already expired —
//!    etcd-io/etcd #11051, #19597); that revision is the epoch;
//! 4. become leader only after the first keep-alive sent after the confirmation succeeds, then
//!    call the listeners' `on_leader_start(epoch)`;
//! 5. step down (`on_leader_stop`, lease revoked, back to 1) when etcd says the lease is gone, when
//!    no keep-alive has succeeded for 3/4 of the TTL (so leader-only work stops before another
//!    coordinator can win at ttl, yet an etcd re-election does not depose us), or when
//!    `observe` shows a newer leader;
//! 6. on shutdown or [`Leadership::resign`]: `on_leader_stop`, then `resign` the election and
//!    revoke the lease, so the next candidate wins at once instead of after the TTL.
//!
//! A transport error on the keep-alive stream is retried (a new stream, possibly to another
//! member) until the budget (3/4 of the TTL) runs out: losing one etcd member must not depose a healthy
//! leader, while losing etcd altogether does, in bounded time.
//!
//! Every decision is a transition of [`super::state`]; this file only does the I/O. Followers
//! run the same observer, so their `view()` names the leader for the leader hint.
//!
//! Calls go to one etcd member at a time and move to the next when one fails
//! ([`crate::etcd::Members`]); plain http for now (see there).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ResignOptions, Txn, TxnOp};
use failback_proto::model::Epoch;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::{self, Effect, Event, Fence, ObservedLeader, Role, State};
use super::{LeaderView, Leadership, LeadershipNotifier};
use crate::config::EtcdConfig;
use crate::error::Error;
use crate::etcd::Members;
use crate::store::keys::Keys;

/// Bound on single unary etcd calls made outside a campaign (confirm, resign, revoke, leader).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest pause between failed terms.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn etcd_err(what: &str) -> impl FnOnce(etcd_client::Error) -> Error + '_ {
    move |e| Error::Store(format!("{what}: {e}"))
}

/// etcd's signed revisions as an epoch (a negative revision never comes from etcd).
fn epoch_of(rev: i64) -> Epoch {
    Epoch(u64::try_from(rev).unwrap_or(0))
}

/// Leadership through etcd. Created by [`EtcdLeadership::start`], which spawns the campaign loop.
pub struct EtcdLeadership {
    view: watch::Receiver<LeaderView>,
    fence: watch::Receiver<Option<Fence>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl EtcdLeadership {
    /// Starts campaigning as `endpoint` (this coordinator's advertised `name@host:port`, the
    /// value followers hand out as the leader hint). `notifier` holds every listener; register
    /// them before calling this. The loop ends when `shutdown` is cancelled or on [`resign`].
    ///
    /// `keepalives` counts each keep-alive etcd answered (`failback_leader_keepalives_total`:
    /// a leader whose count stops rising is about to step down).
    ///
    /// [`resign`]: Leadership::resign
    pub fn start(
        members: Members,
        config: &EtcdConfig,
        endpoint: &str,
        notifier: LeadershipNotifier,
        keepalives: Counter,
        shutdown: &CancellationToken,
    ) -> Self {
        let (view_tx, view) = watch::channel(LeaderView::unknown("etcd"));
        let (fence_tx, fence) = watch::channel(None);
        let stop = shutdown.child_token();
        let campaigner = Campaigner {
            members,
            election: Keys::new(&config.cluster).election(),
            endpoint: endpoint.to_string(),
            ttl: config.lease_ttl,
            state: State::new(),
            notifier,
            view_tx,
            fence_tx,
            stop: stop.clone(),
            unrevoked: Arc::new(std::sync::Mutex::new(Vec::new())),
            keepalives,
        };
        let task = tokio::spawn(campaigner.run());
        EtcdLeadership {
            view,
            fence,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// The fence of the current term (`None` while not leading), for fenced store writes.
    pub fn fences(&self) -> watch::Receiver<Option<Fence>> {
        self.fence.clone()
    }

    /// Stops everything *without* notifying listeners, resigning or revoking, as a crash would:
    /// the lease runs out after its TTL. For tests of what the others see when a leader dies.
    pub async fn abandon(&self) {
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[async_trait]
impl Leadership for EtcdLeadership {
    fn view(&self) -> LeaderView {
        self.view.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<LeaderView> {
        let mut rx = self.view.clone();
        rx.mark_unchanged();
        rx
    }

    async fn resign(&self) -> Result<(), Error> {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            task.await
                .map_err(|e| Error::Internal(format!("campaign loop: {e}")))?;
        }
        Ok(())
    }
}

/// How a term ended (for the log).
#[derive(Debug)]
enum TermEnd {
    /// Shutdown or resign.
    Stopped,
    /// The lease is gone or late.
    LeaseLost(String),
    /// `campaign` returned a key that no longer exists.
    Phantom,
    /// A newer leader was observed.
    Superseded,
}

impl TermEnd {
    fn describe(&self) -> String {
        match self {
            TermEnd::Stopped => "stopped".into(),
            TermEnd::LeaseLost(why) => format!("lease lost: {why}"),
            TermEnd::Phantom => "phantom leadership (the leader key was already gone)".into(),
            TermEnd::Superseded => "a newer leader was observed".into(),
        }
    }
}

/// What the keep-alive task reports.
#[derive(Debug)]
enum KeepAlive {
    /// A keep-alive sent at this instant succeeded.
    Ok(Instant),
    /// The lease is lost (etcd said so, or the keep-alive budget ran out).
    Lost(String),
}

/// The campaign loop's state and handles.
struct Campaigner {
    members: Members,
    election: String,
    endpoint: String,
    ttl: Duration,
    state: State,
    notifier: LeadershipNotifier,
    view_tx: watch::Sender<LeaderView>,
    fence_tx: watch::Sender<Option<Fence>>,
    stop: CancellationToken,
    /// Leases of earlier terms whose revoke failed (etcd unreachable): their candidate keys
    /// would make our next campaign queue behind ourselves until they expire (issue #12), so
    /// each term tries to revoke them first.
    unrevoked: Arc<std::sync::Mutex<Vec<i64>>>,
    /// Keep-alives answered, for the metrics.
    keepalives: Counter,
}

impl Campaigner {
    /// Revokes what earlier terms could not; keeps what still fails.
    async fn revoke_leftovers(&self) {
        let leases: Vec<i64> = match self.unrevoked.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => return,
        };
        for lease in leases {
            let mut client = self.members.pick().client.lease_client();
            match tokio::time::timeout(CALL_TIMEOUT, client.revoke(lease)).await {
                Ok(Ok(_)) => tracing::info!(lease, "revoked a lease an earlier term left behind"),
                // Gone already (expired): nothing to do.
                Ok(Err(e)) if e.to_string().contains("not found") => {}
                _ => {
                    if let Ok(mut l) = self.unrevoked.lock() {
                        l.push(lease);
                    }
                }
            }
        }
    }

    async fn run(mut self) {
        let (obs_tx, mut observed) = mpsc::channel(16);
        let observer_stop = self.stop.child_token();
        // Ends the observer when this loop ends, however it ends (an abort included).
        let _observer_guard = observer_stop.clone().drop_guard();
        tokio::spawn(observe_loop(
            self.members.clone(),
            self.election.clone(),
            keep_alive_interval(self.ttl),
            obs_tx,
            observer_stop,
        ));
        let mut backoff = Duration::from_millis(100);
        while !self.stop.is_cancelled() {
            let pick = self.members.pick();
            match self.term(&pick.client, &mut observed).await {
                Ok(TermEnd::Stopped) => break,
                Ok(end) => {
                    tracing::info!(reason = %end.describe(), "leadership term ended; campaigning again");
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    self.members.failed(pick.index);
                    // Make sure nothing leader-only keeps running on an error path.
                    self.apply(Event::KeepAliveLost).await;
                    tracing::warn!("failed to campaign: {e:#}; retrying in {backoff:?}");
                    // Keep the view current while etcd refuses us (issue #12: during a quorum
                    // loss every term failed before its campaign, where observations are read,
                    // and the view named the last leader seen for as long as the loss lasted).
                    while let Ok(o) = observed.try_recv() {
                        self.apply(Event::Observed(o)).await;
                    }
                    let wake = tokio::time::Instant::now() + backoff;
                    loop {
                        tokio::select! {
                            _ = self.stop.cancelled() => break,
                            _ = tokio::time::sleep_until(wake) => break,
                            Some(o) = observed.recv() => self.apply(Event::Observed(o)).await,
                        }
                    }
                    if self.stop.is_cancelled() {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!("campaign loop stopped");
    }

    /// Feeds `event` to the state machine, publishes the new view and fence, and tells the
    /// listeners. The fence is cleared *before* `on_leader_stop` (writes of the ending term fail
    /// from then on) and set *before* `on_leader_start` (the new term's first writes succeed).
    async fn apply(&mut self, event: Event) {
        let (next, effect) = state::next(&self.state, event);
        self.state = next;
        self.fence_tx.send_replace(self.state.fence().cloned());
        self.view_tx
            .send_if_modified(|v| replace_if_changed(v, self.state.view(&self.endpoint)));
        match effect {
            Effect::None => {}
            Effect::Start(epoch) => {
                tracing::info!(%epoch, endpoint = %self.endpoint, "elected leader");
                self.notifier.notify_start(epoch).await;
            }
            Effect::Stop => {
                tracing::warn!(endpoint = %self.endpoint, "stepped down as leader");
                self.notifier.notify_stop().await;
            }
        }
    }

    /// One lease, one campaign, one (possible) reign.
    async fn term(
        &mut self,
        client: &Client,
        observed: &mut mpsc::Receiver<Option<ObservedLeader>>,
    ) -> Result<TermEnd, Error> {
        self.revoke_leftovers().await;
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let granted_at = Instant::now();
        let lease = bounded("grant a lease", client.lease_client().grant(ttl_secs, None))
            .await?
            .id();
        // From here on the lease must go away when the term ends, whatever ends it.
        let mut lease_guard = LeaseGuard {
            members: self.members.clone(),
            lease,
            armed: true,
            unrevoked: self.unrevoked.clone(),
        };
        let (ka_tx, mut keepalive) = mpsc::channel(8);
        let kick = Arc::new(Notify::new());
        let ka_stop = CancellationToken::new();
        let _ka_guard = ka_stop.clone().drop_guard();
        tokio::spawn(keep_alive_loop(
            self.members.clone(),
            TermLease {
                id: lease,
                ttl: self.ttl,
                granted_at,
            },
            ka_tx,
            kick.clone(),
            ka_stop,
            self.keepalives.clone(),
        ));

        // Campaign, while following the keep-alive and the observed leader.
        let mut election = client.election_client();
        let won = {
            let mut campaigning = election.clone();
            let campaign =
                campaigning.campaign(self.election.clone(), self.endpoint.clone(), lease);
            tokio::pin!(campaign);
            loop {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => {
                        lease_guard.revoke().await;
                        return Ok(TermEnd::Stopped);
                    }
                    ka = keepalive.recv() => match ka {
                        Some(KeepAlive::Ok(_)) => {}
                        Some(KeepAlive::Lost(why)) => {
                            lease_guard.revoke().await;
                            return Ok(TermEnd::LeaseLost(why));
                        }
                        None => {
                            lease_guard.revoke().await;
                            return Ok(TermEnd::LeaseLost("keep-alive task ended".into()));
                        }
                    },
                    Some(o) = observed.recv() => self.apply(Event::Observed(o)).await,
                    r = &mut campaign => {
                        let mut r = r.map_err(etcd_err("campaign"))?;
                        break r.take_leader().ok_or_else(|| {
                            Error::Store("campaign returned no leader key".into())
                        })?;
                    }
                }
            }
        };

        // The phantom-leadership check: the key must exist with the create revision we were given.
        let confirmed_at = Instant::now();
        let fence = Fence {
            key: won.key().to_vec(),
            epoch: epoch_of(won.rev()),
            lease,
        };
        let confirm = Txn::new()
            .when([Compare::create_revision(
                won.key(),
                CompareOp::Equal,
                won.rev(),
            )])
            .and_then([TxnOp::get(won.key(), None)]);
        let confirmed = bounded("confirm the leader key", client.kv_client().txn(confirm))
            .await?
            .succeeded();
        if !confirmed {
            tracing::warn!(
                epoch = %fence.epoch,
                "campaign returned a leader key that no longer exists (phantom leadership); starting over"
            );
            lease_guard.revoke().await;
            return Ok(TermEnd::Phantom);
        }
        self.apply(Event::Won(fence.clone())).await;
        kick.notify_one();

        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    self.apply(Event::Resigned).await;
                    let resign = election.resign(Some(ResignOptions::new().with_leader(won.clone())));
                    match tokio::time::timeout(CALL_TIMEOUT, resign).await {
                        Ok(Ok(_)) => tracing::info!(epoch = %fence.epoch, "resigned the election"),
                        Ok(Err(e)) => tracing::warn!("failed to resign the election: {e}"),
                        Err(_) => tracing::warn!("failed to resign the election: no answer in {CALL_TIMEOUT:?}"),
                    }
                    lease_guard.revoke().await;
                    return Ok(TermEnd::Stopped);
                }
                ka = keepalive.recv() => match ka {
                    Some(KeepAlive::Ok(sent_at)) => {
                        if sent_at >= confirmed_at {
                            self.apply(Event::KeepAliveOk).await;
                        }
                    }
                    Some(KeepAlive::Lost(why)) => {
                        self.apply(Event::KeepAliveLost).await;
                        lease_guard.revoke().await;
                        return Ok(TermEnd::LeaseLost(why));
                    }
                    None => {
                        self.apply(Event::KeepAliveLost).await;
                        lease_guard.revoke().await;
                        return Ok(TermEnd::LeaseLost("keep-alive task ended".into()));
                    }
                },
                Some(o) = observed.recv() => {
                    self.apply(Event::Observed(o)).await;
                    if self.state.role == Role::Follower {
                        lease_guard.revoke().await;
                        return Ok(TermEnd::Superseded);
                    }
                }
            }
        }
    }
}

fn replace_if_changed(current: &mut LeaderView, next: LeaderView) -> bool {
    if *current == next {
        false
    } else {
        *current = next;
        true
    }
}

/// Runs an etcd call with [`CALL_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(etcd_err(what)),
        Err(_) => Err(Error::Store(format!(
            "{what}: no answer from etcd within {CALL_TIMEOUT:?}"
        ))),
    }
}

/// Revokes the term's lease (deleting our candidate or leader key) unless disarmed. Dropping an
/// armed guard revokes in the background: the loop may be unwinding from an error.
struct LeaseGuard {
    members: Members,
    lease: i64,
    armed: bool,
    /// Where a failed revoke leaves the lease for the next term to retry.
    unrevoked: Arc<std::sync::Mutex<Vec<i64>>>,
}

impl LeaseGuard {
    async fn revoke(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let mut client = self.members.pick().client.lease_client();
        match tokio::time::timeout(CALL_TIMEOUT, client.revoke(self.lease)).await {
            Ok(Ok(_)) => tracing::debug!(lease = self.lease, "lease revoked"),
            Ok(Err(e)) if e.to_string().contains("not found") => {}
            // etcd unreachable: the next term retries before it campaigns (else the key lives
            // until the TTL and our own next campaign waits behind it).
            Ok(Err(e)) => {
                tracing::debug!(lease = self.lease, "lease not revoked: {e}");
                self.remember();
            }
            Err(_) => {
                tracing::debug!(lease = self.lease, "lease not revoked: timeout");
                self.remember();
            }
        }
    }

    fn remember(&self) {
        if let Ok(mut l) = self.unrevoked.lock() {
            l.push(self.lease);
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.armed {
            let mut client = self.members.pick().client.lease_client();
            let lease = self.lease;
            // Only possible inside the runtime; if it is gone, the lease simply expires.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = tokio::time::timeout(CALL_TIMEOUT, client.revoke(lease)).await;
                });
            }
        }
    }
}

/// When the keep-alive budget of a lease whose last successful keep-alive was *sent* at
/// `last_ok` runs out: three quarters of the TTL. etcd renewed the lease when it received that
/// keep-alive, after `last_ok`, so no rival can win before `last_ok + ttl`: stopping at 3/4
/// leaves a quarter of the TTL for our own stop, and the fenced writes fail anyway once the
/// key is gone. Decided over ttl/2 (issue #12): half a 10 s TTL is barely longer than an etcd
/// re-election after its raft leader is lost, which deposed a healthy coordinator.
pub fn keep_alive_deadline(last_ok: Instant, ttl: Duration) -> Instant {
    // Test-only mutation (never in release builds): the budget before issue #12, which the
    // etcd-reelection-3s scenario must catch.
    if failback_proto::test_break::broken(failback_proto::test_break::KEEPALIVE_BUDGET) {
        return last_ok + ttl / 2;
    }
    last_ok + ttl - ttl / 4
}

/// The pause between keep-alive rounds: four per TTL, so the budget always covers three
/// rounds and one slow answer does not depose a healthy leader.
pub fn keep_alive_interval(ttl: Duration) -> Duration {
    ttl / 4
}

/// One term's lease, as the keep-alive loop needs it.
struct TermLease {
    id: i64,
    ttl: Duration,
    granted_at: Instant,
}

/// Keeps the term's lease alive, reporting each success (to `events`, and counted in
/// `answered`) and, once, the loss. `kick` asks for a round now (the campaign loop wants a
/// keep-alive sent after its confirmation).
async fn keep_alive_loop(
    members: Members,
    term: TermLease,
    events: mpsc::Sender<KeepAlive>,
    kick: Arc<Notify>,
    stop: CancellationToken,
    answered: Counter,
) {
    let TermLease {
        id: lease,
        ttl,
        granted_at,
    } = term;
    let mut last_ok = granted_at;
    let mut stream = None;
    let mut member = 0;
    let mut pause = keep_alive_interval(ttl);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            _ = kick.notified() => {}
        }
        let deadline = keep_alive_deadline(last_ok, ttl);
        let sent_at = Instant::now();
        let round = async {
            if stream.is_none() {
                let pick = members.pick();
                member = pick.index;
                stream = Some(pick.client.lease_client().keep_alive(lease).await?);
            }
            let Some((keeper, responses)) = stream.as_mut() else {
                return Err(etcd_client::Error::LeaseKeepAliveError(
                    "no keep-alive stream".into(),
                ));
            };
            keeper.keep_alive().await?;
            match responses.message().await? {
                Some(r) => Ok(r.ttl() > 0),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "keep-alive stream ended".into(),
                )),
            }
        };
        // A member that hangs (frozen, partitioned) gets an eighth of the TTL, then the next
        // member is tried: the budget covers several retries.
        let round_deadline = deadline.min(sent_at + ttl / 8);
        let lost = match tokio::time::timeout_at(round_deadline, round).await {
            Ok(Ok(true)) => {
                last_ok = sent_at;
                answered.inc();
                pause = keep_alive_interval(ttl);
                if events.send(KeepAlive::Ok(sent_at)).await.is_err() {
                    return;
                }
                None
            }
            Ok(Ok(false)) => Some("etcd says the lease has expired".to_string()),
            Ok(Err(e)) => {
                // A broken stream (a member went away): retry soon on a new one to the next
                // member, within budget.
                stream = None;
                members.failed(member);
                if Instant::now() >= deadline {
                    Some(format!(
                        "keep-alive failed until the budget (3/4 of the TTL) ran out: {e}"
                    ))
                } else {
                    tracing::debug!(lease, "keep-alive failed, retrying: {e}");
                    pause = Duration::from_millis(100);
                    None
                }
            }
            Err(_) if Instant::now() >= deadline => Some(format!(
                "no keep-alive succeeded within 3/4 of the TTL ({:?})",
                ttl - ttl / 4
            )),
            Err(_) => {
                tracing::debug!(lease, "keep-alive unanswered; trying the next member");
                stream = None;
                members.failed(member);
                pause = Duration::ZERO;
                None
            }
        };
        if let Some(why) = lost {
            tracing::warn!(lease, "lease lost: {why}");
            let _ = events.send(KeepAlive::Lost(why)).await;
            return;
        }
    }
}

fn observed_from(kv: &etcd_client::KeyValue) -> ObservedLeader {
    ObservedLeader {
        key: kv.key().to_vec(),
        endpoint: String::from_utf8_lossy(kv.value()).into_owned(),
        epoch: epoch_of(kv.create_revision()),
    }
}

/// Asks etcd who leads and reports it (`None`: nobody); `Ok(true)` when the receiver is gone.
async fn ask_leader(
    client: &mut etcd_client::ElectionClient,
    election: &str,
    events: &mpsc::Sender<Option<ObservedLeader>>,
) -> Result<bool, String> {
    let seen = match tokio::time::timeout(CALL_TIMEOUT, client.leader(election)).await {
        Ok(Ok(r)) => r.kv().map(observed_from),
        // Test-only mutation (never in release builds): before issue #12 "no leader" kept the
        // last leader seen.
        Ok(Err(e))
            if e.to_string().contains("no leader")
                && !failback_proto::test_break::broken(failback_proto::test_break::LEADER_HINT) =>
        {
            None
        }
        Ok(Err(e)) => return Err(format!("leader(): {e}")),
        Err(_) => return Err("no answer to leader()".to_string()),
    };
    Ok(events.send(seen).await.is_err())
}

/// Follows the election: the current leader first (`observe` alone never says "no leader"),
/// then every change. Restarts with backoff when the stream breaks.
///
/// Issue #12 (truth): during a quorum loss the stream on a surviving member neither breaks nor
/// speaks, and `failbackctl leader` went on naming the last leader seen. So every `recheck` the
/// leader is asked for again (a linearizable read, which fails without quorum); a failed check
/// reports "unknown" (`None`: the view then names no leader) and restarts the observer, which
/// names the leader again once etcd can say who it is.
async fn observe_loop(
    members: Members,
    election: String,
    recheck: Duration,
    events: mpsc::Sender<Option<ObservedLeader>>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let pick = members.pick();
        let mut client = pick.client.election_client();
        let follow = async {
            if ask_leader(&mut client, &election, &events).await? {
                return Ok(());
            }
            let mut stream = client
                .observe(election.clone())
                .await
                .map_err(|e| e.to_string())?;
            let mut checker = client.clone();
            let mut tick = tokio::time::interval(recheck);
            tick.tick().await;
            loop {
                tokio::select! {
                    m = stream.message() => match m.map_err(|e| e.to_string())? {
                        Some(r) => {
                            if let Some(kv) = r.kv()
                                && events.send(Some(observed_from(kv))).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                        None => return Err("observe stream ended".to_string()),
                    },
                    _ = tick.tick() => {
                        if ask_leader(&mut checker, &election, &events).await? {
                            return Ok(());
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = follow => {
                if let Err(e) = r {
                    members.failed(pick.index);
                    // Whoever led may be gone, and etcd cannot say: report "unknown" rather
                    // than the last leader seen. (Test-only mutation, never in release builds:
                    // the hint path before issue #12 kept the last leader seen.)
                    if !failback_proto::test_break::broken(failback_proto::test_break::LEADER_HINT)
                    {
                        let _ = events.send(None).await;
                    }
                    tracing::debug!("observing the election failed: {e}; retrying in {backoff:?}");
                }
            }
        }
        // A stream that worked for a while broke: start the backoff over.
        if started.elapsed() > MAX_BACKOFF * 2 {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_timing_leaves_half_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(4);
        assert_eq!(keep_alive_deadline(t0, ttl), t0 + Duration::from_secs(3));
        assert_eq!(keep_alive_interval(ttl), Duration::from_secs(1));
        // Three rounds fit in the budget, and it ends before the lease can expire.
        assert!(keep_alive_interval(ttl) * 3 <= keep_alive_deadline(t0, ttl) - t0);
        assert!(keep_alive_deadline(t0, ttl) < t0 + ttl);
    }
}
