//! `failbackctl watch`: polls `GetRun` about twice a second and draws [`watch_view`] frames
//! until the run ends.
//!
//! On a terminal the frame is redrawn in place (cursor up, clear line); into a pipe or a file a
//! pool's line is printed only when it changed (step, status, operation, percent in tens), and
//! each finished step once with its outcome and duration, so a CI log stays readable and
//! complete. A lost coordinator (killed leader, election in progress) is not the end
//! of the watch: it reconnects through the endpoint list and the leader hint, and gives up only
//! after [`WatchOptions::retry_for`] without an answer.

use std::io::Write;
use std::time::Duration;

use failback_proto::pb;

use super::watch_view::{self, End, Frame};
use super::{ClientSettings, Control};
use crate::error::Error;
use failback_proto::clock::unix_ms as now_ms;

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Time between polls.
    pub interval: Duration,
    /// Redraw in place (stdout is a terminal).
    pub tty: bool,
    /// How long to keep retrying when no coordinator answers (a leader change takes an etcd
    /// lease TTL plus an election: seconds, not minutes).
    pub retry_for: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            interval: Duration::from_millis(500),
            tty: false,
            retry_for: Duration::from_secs(60),
        }
    }
}

fn io(e: std::io::Error) -> Error {
    Error::io("write the watch output", e)
}

async fn get(control: &mut Control, run_id: &str) -> Result<pb::RunDetail, Error> {
    control
        .call(|mut c| {
            let run_id = run_id.to_string();
            async move { c.get_run(pb::GetRunRequest { run_id }).await }
        })
        .await
}

/// The runbook's step names, from a dry-run plan of the same pools (empty if the leader cannot
/// plan it: the position then shows `?`).
async fn step_names(control: &mut Control, run: &pb::RunSummary) -> Vec<String> {
    let req = pb::PlanRequest {
        runbook: run.runbook.clone(),
        pools: run.pools.iter().take(1).cloned().collect(),
        all: false,
        max_parallel: 1,
    };
    match control
        .call(|mut c| {
            let req = req.clone();
            async move { c.plan(req).await }
        })
        .await
    {
        Ok(p) => p.steps.into_iter().map(|s| s.step).collect(),
        Err(e) => {
            tracing::debug!("no plan for the step count: {e}");
            Vec::new()
        }
    }
}

/// Draws frames on a terminal (in place) or a log (changed lines only).
struct Painter<'a> {
    out: &'a mut dyn Write,
    tty: bool,
    drawn: usize,
    last_keys: Vec<String>,
    /// Per pool, the finished steps already printed (log mode).
    printed: Vec<std::collections::BTreeSet<String>>,
    header: String,
}

impl Painter<'_> {
    fn paint(&mut self, f: &Frame) -> Result<(), Error> {
        if self.tty {
            if self.drawn > 0 {
                write!(self.out, "\x1b[{}A", self.drawn).map_err(io)?;
            }
            writeln!(self.out, "\x1b[2K{}", f.header).map_err(io)?;
            for p in &f.pools {
                writeln!(self.out, "\x1b[2K{}", p.text).map_err(io)?;
            }
            self.drawn = f.pools.len() + 1;
        } else {
            if self.header.is_empty() {
                writeln!(self.out, "{}", f.header).map_err(io)?;
                self.header = f.header.clone();
            }
            self.last_keys.resize(f.pools.len(), String::new());
            self.printed.resize(f.pools.len(), Default::default());
            for ((p, last), printed) in f
                .pools
                .iter()
                .zip(self.last_keys.iter_mut())
                .zip(self.printed.iter_mut())
            {
                for (step, line) in &p.finished {
                    if printed.insert(step.clone()) {
                        writeln!(self.out, "{line}").map_err(io)?;
                    }
                }
                if *last != p.key {
                    writeln!(self.out, "{}", p.text).map_err(io)?;
                    *last = p.key.clone();
                }
            }
        }
        self.out.flush().map_err(io)
    }

    /// A line outside the frame (a retry note): the next frame is drawn below it.
    fn note(&mut self, text: &str) -> Result<(), Error> {
        writeln!(self.out, "{text}").map_err(io)?;
        self.drawn = 0;
        self.out.flush().map_err(io)
    }
}

/// Watches `run` (`None` = the newest run) until it ends; returns the closing line's exit code
/// (0 succeeded, 3 failed or aborted). Errors: the run does not exist, or no coordinator
/// answered for `retry_for`.
pub async fn watch(
    settings: &ClientSettings,
    run: Option<String>,
    out: &mut dyn Write,
    options: &WatchOptions,
) -> Result<u8, Error> {
    let mut control = Control::connect(settings).await?;
    let first = get(&mut control, run.as_deref().unwrap_or_default()).await?;
    let summary = first.run.clone().unwrap_or_default();
    // Pinned: "the newest run" must not switch to another one started while we watch.
    let run_id = summary.run_id.clone();
    let steps = step_names(&mut control, &summary).await;
    let mut painter = Painter {
        out,
        tty: options.tty,
        drawn: 0,
        last_keys: Vec::new(),
        printed: Vec::new(),
        header: String::new(),
    };
    let mut detail = first;
    let mut tick = tokio::time::interval(options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        painter.paint(&watch_view::frame(&detail, &steps, now_ms()))?;
        if let Some(End { text, code }) = watch_view::end(&detail) {
            painter.note(&text)?;
            return Ok(code);
        }
        tick.tick().await;
        detail = next(settings, &mut control, &run_id, &mut painter, options).await?;
    }
}

/// The next answer for `run_id`, riding out a leader change: reconnect and retry every
/// `interval` until `retry_for` passes without an answer.
async fn next(
    settings: &ClientSettings,
    control: &mut Control,
    run_id: &str,
    painter: &mut Painter<'_>,
    options: &WatchOptions,
) -> Result<pb::RunDetail, Error> {
    let deadline = tokio::time::Instant::now() + options.retry_for;
    let mut noted = false;
    loop {
        let e = match get(control, run_id).await {
            Ok(d) => return Ok(d),
            Err(e) if e.is_retryable() => e,
            Err(e) => return Err(e),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(e);
        }
        if !noted {
            painter.note(&format!("(no answer from the coordinators: {e}; retrying)"))?;
            noted = true;
        }
        tokio::time::sleep(options.interval).await;
        if let Ok(c) = Control::connect(settings).await {
            *control = c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::watch_view::PoolLine;

    fn frame(key: &str, text: &str, finished: &[&str]) -> Frame {
        Frame {
            header: "run r-1 (failback) running".into(),
            pools: vec![PoolLine {
                pool: "a.lab".into(),
                key: key.into(),
                text: text.into(),
                finished: finished
                    .iter()
                    .map(|s| (s.to_string(), format!("a.lab {s} succeeded")))
                    .collect(),
            }],
        }
    }

    fn painter(out: &mut Vec<u8>, tty: bool) -> Painter<'_> {
        Painter {
            out,
            tty,
            drawn: 0,
            last_keys: Vec::new(),
            printed: Vec::new(),
            header: String::new(),
        }
    }

    #[test]
    fn a_log_gets_changes_only_and_each_finished_step_once() {
        let mut out = Vec::new();
        let mut p = painter(&mut out, false);
        p.paint(&frame("k1", "a.lab fb1 0:01", &[])).unwrap();
        p.paint(&frame("k1", "a.lab fb1 0:02", &[])).unwrap();
        p.paint(&frame("k2", "a.lab fb3 0:00", &["fb1", "fb2"]))
            .unwrap();
        p.paint(&frame("k2", "a.lab fb3 0:01", &["fb1", "fb2"]))
            .unwrap();
        p.note("run r-1 succeeded").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "run r-1 (failback) running\na.lab fb1 0:01\na.lab fb1 succeeded\na.lab fb2 succeeded\na.lab fb3 0:00\nrun r-1 succeeded\n"
        );
    }

    #[test]
    fn a_terminal_is_redrawn_in_place() {
        let mut out = Vec::new();
        let mut p = painter(&mut out, true);
        p.paint(&frame("k1", "a.lab fb1 0:01", &[])).unwrap();
        p.paint(&frame("k1", "a.lab fb1 0:02", &[])).unwrap();
        p.note("lost").unwrap();
        p.paint(&frame("k1", "a.lab fb1 0:03", &[])).unwrap();
        let text = String::from_utf8(out).unwrap();
        let up = "\x1b[2A";
        assert_eq!(
            text,
            format!(
                "\x1b[2Krun r-1 (failback) running\n\x1b[2Ka.lab fb1 0:01\n{up}\x1b[2Krun r-1 (failback) running\n\x1b[2Ka.lab fb1 0:02\nlost\n\x1b[2Krun r-1 (failback) running\n\x1b[2Ka.lab fb1 0:03\n"
            )
        );
    }
}
