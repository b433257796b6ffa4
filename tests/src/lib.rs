//! The failback lab: a harness that runs the real binaries as processes on loopback, and (in later
//! issues) the simulators (`sqlsim`, `lyncsim`) and the end-to-end suites.
//!
//! Layout:
//! - [`harness`] — processes killed on drop, free ports, polling with deadlines, and [`harness::fleet`]
//!   which writes certificates, topology and configs and starts coordinators and agents;
//!   [`harness::etcd`] starts a real 1- or 3-member etcd on free loopback ports.
//! - [`sqlsim`] — a SQL Server stand-in speaking TDS 7.4 (binary `sqlsim`), used by the lab and by
//!   the agent's real tiberius code path.
//! - [`lyncsim`] — the Lync Management Shell stand-in (binary `lyncsim`): a PowerShell-subset
//!   interpreter over a shared Central Management Store file.
//!
//! The binaries must be built first (`cargo build --workspace`); the harness finds them next to
//! the running test or lab executable and says so clearly when they are missing.

pub mod harness;
/// The one-command drill behind `failback-lab` (failover, then failback, with a report).
pub mod lab;
pub mod lyncsim;
pub mod scenario;
pub mod sqlsim;
