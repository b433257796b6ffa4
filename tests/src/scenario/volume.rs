//! A pool share with little free space, for the scenarios that fill it (`[fleet] share_free_mb`):
//! the share becomes a tmpfs of its own, sized so that it holds what the lab put there plus
//! that many MiB, and a backup that does not fit fails as on a full disk — sqlsim's `BACKUP`
//! with error 3202 "Write on … failed: 112(There is not enough space on the disk.)" and 3013,
//! while the agent's free-space operation (statvfs) reports the same volume preflight judges.
//!
//! Why a mount namespace: a real small volume is the only way SQL Server's writes and the
//! agent's free-space check see the same full disk (a simulated quota would let the two
//! disagree). Mounting a tmpfs needs CAP_SYS_ADMIN, which any user has inside a user namespace
//! of its own; a private mount namespace takes the mount away with its last process, so a
//! killed test never leaves a mount behind. The runner cannot enter one itself (a
//! multi-threaded process cannot change its user namespace), so such a scenario runs as
//! `unshare --user --map-root-user --mount --pid --fork --kill-child --mount-proc failback-lab
//! scenario FILE`, and its outcome is read back from the file it writes. The PID namespace makes
//! the cleanup total: when the child lab dies, however it dies, the kernel kills every process
//! it started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::runner::{Outcome, outcome_path};
use super::spec::Scenario;
use crate::harness::process::{Proc, bin};

/// Set (to `1`) in the namespaced child: mounts are private to it.
pub const ENV: &str = "FAILBACK_SCENARIO_PRIVATE_MOUNTS";

const MIB: u64 = 1 << 20;

/// Whether this process runs in a mount namespace of its own (set up by [`run_isolated`]).
pub fn inside() -> bool {
    std::env::var_os(ENV).is_some()
}

/// Runs `s` in a fresh user, mount and PID namespace and returns the outcome it wrote.
pub async fn run_isolated(s: &Scenario, break_name: Option<&str>) -> anyhow::Result<Outcome> {
    let Some(file) = &s.source else {
        bail!(
            "scenario {}: share_free_mb needs a scenario file to run in a namespace of its own",
            s.name
        );
    };
    let lab = bin("failback-lab")?;
    let out = outcome_path(&s.name, break_name)?;
    match std::fs::remove_file(&out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove the old {}", out.display())),
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let log = out.with_extension("log");
    let lab = lab.to_string_lossy().into_owned();
    let file = file.to_string_lossy().into_owned();
    let mut args = vec![
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
        lab.as_str(),
        "scenario",
        file.as_str(),
    ];
    if let Some(b) = break_name {
        args.extend(["--break", b]);
    }
    let mut child = Proc::spawn(
        &format!("scenario {} (namespaced)", s.name),
        Path::new("unshare"),
        &args,
        &[(ENV, "1")],
        &log,
    )
    .with_context(|| {
        format!(
            "scenario {}: start it under unshare (util-linux) in a user and mount namespace",
            s.name
        )
    })?;
    // The child has its own deadline for the run; this one covers building the lab too.
    let deadline = Instant::now() + s.expect.deadline + Duration::from_secs(300);
    while child.is_running() {
        if Instant::now() > deadline {
            child.kill();
            bail!(
                "scenario {}: the namespaced run did not end in time; its log:\n{}",
                s.name,
                child.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = std::fs::read(&out).with_context(|| {
        format!(
            "scenario {}: the namespaced run wrote no outcome ({}); its log:\n{}",
            s.name,
            out.display(),
            child.log_tail(40)
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("read {}", out.display()))
}

/// A share turned into a small volume; [`ShareVolume::release`] unmounts it.
pub struct ShareVolume {
    share: PathBuf,
    /// Bytes free on it when it was made.
    pub free_bytes: u64,
    /// Bytes of the lab's files copied onto it.
    pub used_bytes: u64,
}

/// Moves what `share` holds onto a tmpfs mounted there with `free_mb` MiB to spare. Only in a
/// private mount namespace ([`inside`]): a mount in the host's would outlive a killed test.
pub fn shrink(share: &Path, free_mb: u32) -> anyhow::Result<ShareVolume> {
    if !inside() {
        bail!(
            "{}: a small share volume is mounted only in a namespace of the scenario's own ({ENV})",
            share.display()
        );
    }
    let before = share.with_file_name("share.before-volume");
    std::fs::rename(share, &before).with_context(|| format!("move {} aside", share.display()))?;
    std::fs::create_dir(share).with_context(|| format!("create {}", share.display()))?;
    // Mounted large enough for the copy, then shrunk to what the copy used plus the free space
    // asked for: tmpfs counts pages, so the used size is read back rather than summed.
    // (a tmpfs size is a limit, not an allocation).
    cmd(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=2g",
            "failback-share",
            &path(share),
        ],
    )?;
    let from = format!("{}/.", path(&before));
    cmd("cp", &["-a", &from, &path(share)])?;
    let total = fs4::total_space(share).with_context(|| format!("size of {}", share.display()))?;
    let avail = fs4::available_space(share)
        .with_context(|| format!("free space of {}", share.display()))?;
    let used = total.saturating_sub(avail);
    let size_k = (used + u64::from(free_mb) * MIB).div_ceil(1024);
    let remount = format!("remount,size={size_k}k");
    cmd("mount", &["-o", &remount, &path(share)])?;
    std::fs::remove_dir_all(&before).with_context(|| format!("remove {}", before.display()))?;
    let free_bytes = fs4::available_space(share)
        .with_context(|| format!("free space of {}", share.display()))?;
    Ok(ShareVolume {
        share: share.to_path_buf(),
        free_bytes,
        used_bytes: used,
    })
}

impl ShareVolume {
    /// Unmounts the volume (lazily: an instance may still hold a file open), so the lab's
    /// folder can be removed; its files go with it.
    pub fn release(self) {
        if let Err(e) = cmd("umount", &["-l", &path(&self.share)]) {
            tracing::warn!("{e:#}");
        }
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn cmd(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
