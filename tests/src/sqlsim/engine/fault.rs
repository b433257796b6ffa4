//! Fault switches, so tests and the lab can make sqlsim fail the way a real server or network
//! does. They are armed with `--fault SPEC` on the command line or, at run time, with
//! `EXEC sqlsim.fault N'SPEC'` from the sim administrator login (never from `sa`). A SPEC is:
//!
//! | spec | effect |
//! |---|---|
//! | `delay KIND MS` | statements of KIND (`select`, `insert`, `exec`, `alter`, …, or `all`) wait MS ms before running; for `backup` / `restore` the MS are spread over the file I/O instead, so `percent_complete` moves visibly |
//! | `fail KIND N ERROR` | the Nth `backup` or `restore` from now fails with error number ERROR (then 3013) |
//! | `corrupt N [payload\|header]` | the Nth backup file written from now is damaged after it is written (payload: RESTORE/VERIFYONLY fail with 3183; header: 3241) |
//! | `drop KIND [N]` | the connection running the Nth statement of KIND from now is closed without an answer |
//! | `exit-restore [N]` | the process exits (code 75) halfway through the Nth RESTORE from now, leaving the database RESTORING |
//! | `clear` | disarms everything |
//!
//! N counts from 1 (= the next one). One-shot faults disarm after firing; delays stay.

use std::collections::BTreeMap;
use std::time::Duration;

/// Which part of a backup file `corrupt` damages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptPart {
    /// Bytes in the middle of the payload (checksum mismatch, 3183).
    Payload,
    /// Bytes of the header (3241).
    Header,
}

/// What happens before a statement runs.
#[derive(Debug, Default)]
pub struct StatementFault {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Close the connection instead of running it.
    pub disconnect: bool,
}

/// A countdown to the Nth event.
#[derive(Clone, Debug)]
struct Countdown<T> {
    kind: String,
    remaining: u32,
    payload: T,
}

/// The armed faults.
#[derive(Debug, Default)]
pub struct FaultSet {
    delays: BTreeMap<String, Duration>,
    fails: Vec<Countdown<i32>>,
    corrupts: Vec<Countdown<CorruptPart>>,
    drops: Vec<Countdown<()>>,
    exits: Vec<Countdown<()>>,
}

/// Kinds that pace their I/O instead of waiting up front.
fn is_io_kind(kind: &str) -> bool {
    kind == "backup" || kind == "restore"
}

/// Decrements matching countdowns; returns the payload of one that reached zero.
fn fire<T: Clone>(list: &mut Vec<Countdown<T>>, kind: &str) -> Option<T> {
    let mut fired = None;
    list.retain_mut(|c| {
        if c.kind != kind && c.kind != "all" {
            return true;
        }
        c.remaining = c.remaining.saturating_sub(1);
        if c.remaining == 0 && fired.is_none() {
            fired = Some(c.payload.clone());
            return false;
        }
        true
    });
    fired
}

fn number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, String> {
    word.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("{what} must be a number"))
}

impl FaultSet {
    /// Parses one SPEC (see the module docs) and arms it.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let words: Vec<String> = spec.split_whitespace().map(str::to_lowercase).collect();
        let mut it = words.iter().map(String::as_str);
        let verb = it.next().ok_or("empty fault spec")?;
        let kind = |w: Option<&str>| -> Result<String, String> {
            w.map(str::to_string)
                .ok_or_else(|| "missing statement kind".to_string())
        };
        match verb {
            "clear" => *self = FaultSet::default(),
            "delay" => {
                let k = kind(it.next())?;
                let ms: u64 = number(it.next(), "milliseconds")?;
                if ms == 0 {
                    self.delays.remove(&k);
                } else {
                    self.delays.insert(k, Duration::from_millis(ms));
                }
            }
            "fail" => {
                let k = kind(it.next())?;
                if !is_io_kind(&k) {
                    return Err("fail applies to backup or restore".into());
                }
                let n: u32 = number(it.next(), "N")?;
                let error: i32 = number(it.next(), "error number")?;
                self.fails.push(Countdown {
                    kind: k,
                    remaining: n.max(1),
                    payload: error,
                });
            }
            "corrupt" => {
                let n: u32 = match it.next() {
                    Some(w) => number(Some(w), "N")?,
                    None => 1,
                };
                let part = match it.next() {
                    None | Some("payload") => CorruptPart::Payload,
                    Some("header") => CorruptPart::Header,
                    Some(other) => return Err(format!("unknown part '{other}'")),
                };
                self.corrupts.push(Countdown {
                    kind: "backup".into(),
                    remaining: n.max(1),
                    payload: part,
                });
            }
            "drop" => {
                let k = kind(it.next())?;
                let n: u32 = match it.next() {
                    Some(w) => number(Some(w), "N")?,
                    None => 1,
                };
                self.drops.push(Countdown {
                    kind: k,
                    remaining: n.max(1),
                    payload: (),
                });
            }
            "exit-restore" => {
                let n: u32 = match it.next() {
                    Some(w) => number(Some(w), "N")?,
                    None => 1,
                };
                self.exits.push(Countdown {
                    kind: "restore".into(),
                    remaining: n.max(1),
                    payload: (),
                });
            }
            other => return Err(format!("unknown fault '{other}'")),
        }
        if it.next().is_some() {
            return Err("unexpected words at the end".into());
        }
        Ok(())
    }

    /// Called as a statement of `kind` starts.
    pub fn before_statement(&mut self, kind: &str) -> StatementFault {
        let disconnect = fire(&mut self.drops, kind).is_some();
        let delay = if is_io_kind(kind) {
            None
        } else {
            self.delays
                .get(kind)
                .or_else(|| self.delays.get("all"))
                .copied()
        };
        StatementFault { delay, disconnect }
    }

    /// Total pacing for a BACKUP or RESTORE's I/O.
    pub fn pacing(&self, kind: &str) -> Option<Duration> {
        self.delays
            .get(kind)
            .or_else(|| self.delays.get("all"))
            .copied()
    }

    /// The error number this backup/restore must fail with, if its `fail` countdown fires.
    pub fn take_failure(&mut self, kind: &str) -> Option<i32> {
        fire(&mut self.fails, kind)
    }

    /// Whether (and how) the backup file being written must be damaged.
    pub fn take_corruption(&mut self) -> Option<CorruptPart> {
        fire(&mut self.corrupts, "backup")
    }

    /// Whether this restore must exit the process halfway.
    pub fn take_exit(&mut self) -> bool {
        fire(&mut self.exits, "restore").is_some()
    }

    /// The armed faults, one line each (for `EXEC sqlsim.fault` without arguments).
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .delays
            .iter()
            .map(|(k, d)| format!("delay {k} {}", d.as_millis()))
            .collect();
        out.extend(
            self.fails
                .iter()
                .map(|c| format!("fail {} {} {}", c.kind, c.remaining, c.payload)),
        );
        out.extend(self.corrupts.iter().map(|c| {
            let part = match c.payload {
                CorruptPart::Payload => "payload",
                CorruptPart::Header => "header",
            };
            format!("corrupt {} {part}", c.remaining)
        }));
        out.extend(
            self.drops
                .iter()
                .map(|c| format!("drop {} {}", c.kind, c.remaining)),
        );
        out.extend(
            self.exits
                .iter()
                .map(|c| format!("exit-restore {}", c.remaining)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_counts_from_the_next_one() {
        let mut f = FaultSet::default();
        f.apply("fail backup 2 3201").unwrap();
        assert_eq!(f.take_failure("backup"), None);
        assert_eq!(f.take_failure("restore"), None);
        assert_eq!(f.take_failure("backup"), Some(3201));
        assert_eq!(f.take_failure("backup"), None);
    }

    #[test]
    fn delays_and_drops() {
        let mut f = FaultSet::default();
        f.apply("delay select 20").unwrap();
        f.apply("delay backup 500").unwrap();
        f.apply("drop insert").unwrap();
        assert_eq!(
            f.before_statement("select").delay,
            Some(Duration::from_millis(20))
        );
        assert_eq!(f.before_statement("backup").delay, None);
        assert_eq!(f.pacing("backup"), Some(Duration::from_millis(500)));
        assert!(f.before_statement("insert").disconnect);
        assert!(!f.before_statement("insert").disconnect);
        assert_eq!(f.describe().len(), 2);
        f.apply("clear").unwrap();
        assert!(f.describe().is_empty());
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut f = FaultSet::default();
        for bad in [
            "",
            "explode",
            "delay select",
            "fail select 1 5",
            "corrupt 1 body",
            "drop",
        ] {
            assert!(f.apply(bad).is_err(), "{bad}");
        }
    }
}
