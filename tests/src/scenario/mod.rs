//! The reliability scenario suite (issue #12, DESIGN §9): scenario files in `tests/scenarios/`
//! describe a fleet, a failback run and faults at named points ([`spec`]); the runner drives
//! them on real processes ([`runner`], [`faults`]); every DESIGN §9 invariant is checked after
//! every scenario from what the processes left behind ([`evidence`], [`invariants`], and
//! [`bad_input`] for §9.8); and
//! `failback-lab reliability` turns the last outcomes into docs/RELIABILITY.md ([`reliability`]).

pub mod bad_input;
pub mod cycle;
pub mod drill;
pub mod evidence;
pub mod fault_window;
pub mod faults;
pub mod invariants;
pub mod preflight;
pub mod reliability;
pub mod runner;
pub mod spec;
pub mod volume;
