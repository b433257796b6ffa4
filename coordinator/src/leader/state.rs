//! The etcd leadership state machine as pure functions: what the campaign loop observed goes in
//! as an [`Event`], the next [`State`] and the one [`Effect`] for the listeners come out. The loop
//! in `etcd.rs` does the I/O; every decision is here, where a unit test can reach it.
//!
//! ```text
//!              Won(fence)                 KeepAliveOk
//!  Follower ───────────────▶ Elected ───────────────────▶ Leader   (effect: Start(epoch))
//!     ▲                         │                           │
//!     │   KeepAliveLost /       │                           │ KeepAliveLost, Resigned,
//!     │   a newer leader seen   │                           │ a newer leader seen
//!     └─────────────────────────┴───────────────────────────┘ (from Leader, effect: Stop)
//! ```
//!
//! `Elected` exists because `campaign` returning is not proof (the phantom-leadership gotcha:
//! etcd issues #11051, #19597): the loop confirms the leader key by its create revision before
//! feeding `Won`, and declares leadership only after the first keep-alive that succeeded after
//! that, so the lease is known to be alive when leader-only work starts.

use failback_proto::model::Epoch;

use super::{LeaderView, endpoint_name};

/// Proof of leadership for fenced writes: our leader key and its create revision (the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader key etcd created for our campaign (`<election>/<lease hex>`).
    pub key: Vec<u8>,
    /// Its create revision: the epoch.
    pub epoch: Epoch,
    /// The lease the key is attached to.
    pub lease: i64,
}

/// The leader some coordinator holds, as seen through `observe`/`leader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLeader {
    /// Its leader key.
    pub key: Vec<u8>,
    /// The value it campaigned with: its advertised endpoint.
    pub endpoint: String,
    /// The key's create revision.
    pub epoch: Epoch,
}

/// Our role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not leading (campaigning or waiting to).
    Follower,
    /// Campaign won and confirmed; waiting for the first keep-alive after it.
    Elected(Fence),
    /// Leading: leader-only work runs, store writes carry this fence.
    Leader(Fence),
}

/// Everything the loop knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Our role.
    pub role: Role,
    /// The last leader observed in etcd (ours included), `None` when there is none or unknown.
    pub observed: Option<ObservedLeader>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `observe`/`leader` reported the current leader (`None`: no leader). Only a leader with a
    /// newer epoch than ours makes us step down; older observations may be stale.
    Observed(Option<ObservedLeader>),
    /// Our campaign returned and the leader key was confirmed by its create revision.
    Won(Fence),
    /// A keep-alive sent after the current role began succeeded.
    KeepAliveOk,
    /// The lease is gone, or no keep-alive succeeded within the budget (3/4 of the TTL).
    KeepAliveLost,
    /// We resign (graceful shutdown).
    Resigned,
}

/// What the listeners must be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// `on_leader_start(epoch)`.
    Start(Epoch),
    /// `on_leader_stop()`.
    Stop,
}

impl State {
    /// The initial state: follower, nothing observed.
    pub fn new() -> Self {
        State {
            role: Role::Follower,
            observed: None,
        }
    }

    /// The fence store writes must carry, when leading.
    pub fn fence(&self) -> Option<&Fence> {
        match &self.role {
            Role::Leader(f) => Some(f),
            _ => None,
        }
    }

    /// The view this state gives `view()` callers; `own_endpoint` is what we campaign with.
    pub fn view(&self, own_endpoint: &str) -> LeaderView {
        match &self.role {
            Role::Leader(f) => LeaderView {
                is_leader: true,
                leader_id: Some(endpoint_name(own_endpoint)),
                leader_endpoint: Some(own_endpoint.to_string()),
                epoch: f.epoch,
                mode: "etcd",
            },
            role => match &self.observed {
                // While Elected, etcd names us but we do not act yet: give no hint rather than
                // send clients to a coordinator that will refuse them. Likewise a deposed
                // coordinator whose last observation is its own key (quorum lost, the key not
                // yet expired) must not name itself: agents followed that hint back to it in a
                // tight loop (issue #12, reconnect storm).
                Some(o)
                    if !matches!(role, Role::Elected(f) if f.key == o.key)
                        && (o.endpoint != own_endpoint
                            // Test-only mutation (never in release builds): issue #12's storm.
                            || failback_proto::test_break::broken(
                                failback_proto::test_break::LEADER_HINT,
                            )) =>
                {
                    LeaderView {
                        is_leader: false,
                        leader_id: Some(endpoint_name(&o.endpoint)),
                        leader_endpoint: Some(o.endpoint.clone()),
                        epoch: o.epoch,
                        mode: "etcd",
                    }
                }
                _ => LeaderView::unknown("etcd"),
            },
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// The transition function.
pub fn next(state: &State, event: Event) -> (State, Effect) {
    let mut s = state.clone();
    let effect = match (&state.role, event) {
        (_, Event::Observed(o)) => {
            s.observed = o.clone();
            match &state.role {
                // A newer leader exists: our key is gone. Only a *newer* epoch counts, because
                // observations travel through a channel and one made before our win (naming the
                // previous leader, or none) may arrive after it; losing our own key without a
                // successor is the keep-alive's to notice.
                Role::Leader(f) | Role::Elected(f)
                    if o.as_ref()
                        .is_some_and(|o| o.key != f.key && o.epoch > f.epoch) =>
                {
                    let was_leader = matches!(state.role, Role::Leader(_));
                    s.role = Role::Follower;
                    if was_leader {
                        Effect::Stop
                    } else {
                        Effect::None
                    }
                }
                _ => Effect::None,
            }
        }
        (Role::Follower, Event::Won(f)) => {
            s.role = Role::Elected(f);
            Effect::None
        }
        // A second Won while elected/leading cannot happen (one campaign per term); keep the
        // current term rather than switch fences under running work.
        (_, Event::Won(_)) => Effect::None,
        (Role::Elected(f), Event::KeepAliveOk) => {
            s.role = Role::Leader(f.clone());
            Effect::Start(f.epoch)
        }
        (_, Event::KeepAliveOk) => Effect::None,
        (Role::Leader(_), Event::KeepAliveLost | Event::Resigned) => {
            s.role = Role::Follower;
            Effect::Stop
        }
        (_, Event::KeepAliveLost | Event::Resigned) => {
            s.role = Role::Follower;
            Effect::None
        }
    };
    (s, effect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(rev: u64) -> Fence {
        Fence {
            key: format!("/failback/c/leader/{rev:x}").into_bytes(),
            epoch: Epoch(rev),
            lease: rev as i64,
        }
    }

    fn observed(f: &Fence, ep: &str) -> ObservedLeader {
        ObservedLeader {
            key: f.key.clone(),
            endpoint: ep.into(),
            epoch: f.epoch,
        }
    }

    #[test]
    fn leader_only_after_confirmed_win_and_keepalive() {
        let s = State::new();
        let (s, e) = next(&s, Event::KeepAliveOk);
        assert_eq!((s.role.clone(), e), (Role::Follower, Effect::None));
        let (s, e) = next(&s, Event::Won(fence(5)));
        assert_eq!(e, Effect::None);
        assert!(!s.view("me@h:1").is_leader);
        assert_eq!(s.fence(), None, "no fenced writes before the keep-alive");
        let (s, e) = next(&s, Event::KeepAliveOk);
        assert_eq!(e, Effect::Start(Epoch(5)));
        let v = s.view("me@h:1");
        assert!(v.is_leader);
        assert_eq!(v.epoch, Epoch(5));
        assert_eq!(v.leader_id.as_deref(), Some("me"));
        assert_eq!(s.fence(), Some(&fence(5)));
        // Further keep-alives change nothing.
        let (s2, e) = next(&s, Event::KeepAliveOk);
        assert_eq!((s2, e), (s, Effect::None));
    }

    #[test]
    fn step_down_on_keepalive_loss_resign_or_another_leader() {
        let leader = {
            let (s, _) = next(&State::new(), Event::Won(fence(5)));
            next(&s, Event::KeepAliveOk).0
        };
        for ev in [
            Event::KeepAliveLost,
            Event::Resigned,
            Event::Observed(Some(observed(&fence(9), "other@h:2"))),
        ] {
            let (s, e) = next(&leader, ev.clone());
            assert_eq!(e, Effect::Stop, "{ev:?}");
            assert_eq!(s.role, Role::Follower, "{ev:?}");
            assert_eq!(s.fence(), None);
        }
        // Seeing ourselves, an older leader or no leader (stale observations) is no reason to
        // step down.
        for ev in [
            Event::Observed(Some(observed(&fence(5), "me@h:1"))),
            Event::Observed(Some(observed(&fence(3), "old@h:3"))),
            Event::Observed(None),
        ] {
            let (s, e) = next(&leader, ev.clone());
            assert_eq!(e, Effect::None, "{ev:?}");
            assert!(s.view("me@h:1").is_leader, "{ev:?}");
        }
    }

    #[test]
    fn elected_but_not_confirmed_never_starts_or_stops() {
        let (elected, _) = next(&State::new(), Event::Won(fence(5)));
        let (s, e) = next(&elected, Event::KeepAliveLost);
        assert_eq!((s.role, e), (Role::Follower, Effect::None));
        let (s, e) = next(
            &elected,
            Event::Observed(Some(observed(&fence(9), "o@h:2"))),
        );
        assert_eq!((s.role, e), (Role::Follower, Effect::None));
    }

    #[test]
    fn follower_view_names_the_observed_leader() {
        let s = State::new();
        assert_eq!(s.view("me@h:1"), LeaderView::unknown("etcd"));
        let (s, _) = next(
            &s,
            Event::Observed(Some(observed(&fence(12), "c2@10.0.0.2:7443"))),
        );
        let v = s.view("me@h:1");
        assert!(!v.is_leader);
        assert_eq!(v.leader_endpoint.as_deref(), Some("c2@10.0.0.2:7443"));
        assert_eq!(v.leader_id.as_deref(), Some("c2"));
        assert_eq!(v.epoch, Epoch(12));
        // Deposed (keep-alive lost) while the last observation is still our own key: no hint
        // naming ourselves.
        let leader = {
            let (s, _) = next(&State::new(), Event::Won(fence(5)));
            next(&s, Event::KeepAliveOk).0
        };
        let (s, _) = next(
            &leader,
            Event::Observed(Some(observed(&fence(5), "me@h:1"))),
        );
        let (s, _) = next(&s, Event::KeepAliveLost);
        assert_eq!(s.view("me@h:1"), LeaderView::unknown("etcd"));
        // Elected on our own key: etcd names us, but we give no hint until we act.
        let (s, _) = next(&State::new(), Event::Won(fence(13)));
        let (s, _) = next(&s, Event::Observed(Some(observed(&fence(13), "me@h:1"))));
        assert_eq!(s.view("me@h:1"), LeaderView::unknown("etcd"));
    }

    #[test]
    fn a_second_win_keeps_the_current_term() {
        let (s, _) = next(&State::new(), Event::Won(fence(5)));
        let (s, _) = next(&s, Event::KeepAliveOk);
        let (s2, e) = next(&s, Event::Won(fence(7)));
        assert_eq!((s2, e), (s, Effect::None));
    }
}
