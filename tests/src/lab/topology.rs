//! The lab's names and layout: which pools, agents, SQL instances, chat servers and folders a
//! lab of N pools has, and the topology file the coordinator reads.
//!
//! Decided (documented in the README's lab section too):
//! - **Four SQL instances per pool** (primary and its mirror in DC1, backup and its mirror in
//!   DC2), as the PChat DR design has them; `--no-mirrors` leaves the two mirrors out (the
//!   topology allows that) for a lighter lab. Only `mgc` is mirrored (`mgccomp` holds transient
//!   compliance data and is not failed over). In the normal state the primary `mgc` is mirrored
//!   to the primary mirror; the backup `mgc` is a log-shipping secondary and cannot be. After
//!   the failover the lab mirrors the new primary (backup → backup mirror) by hand, as an
//!   operator does when the failed-over period will be long (FO-6 is optional and the runbook
//!   skips it), so FB-2 has mirroring to remove.
//! - **One Lync shell host per data center** (`fe01.dc1.lab`, `fe01.dc2.lab`), shared by every
//!   pool, as a Front End pool's servers would be; each pool has one chat server per data center
//!   (`pc-pN.dc1.lab`, `pc-pN.dc2.lab`). Chat servers have no agent: they are the traffic.
//! - **The share lives in DC1** (a file server next to the primary back ends, the common
//!   layout): losing DC1 loses every log backup not yet copied to DC2, which is exactly the
//!   loss window the failover must report. The copy folders live in DC2 on the backup hosts.
//!   Both are POSIX folders under the agents' files root (`<workdir>/files/dc1/share/<pool>`,
//!   `<workdir>/files/dc2/copy/<pool>`), used as is by sqlsim and by the files backend.

use std::path::{Path, PathBuf};

/// DC1's hosts run at UTC+1 and DC2's at UTC-5 (sqlsim `--utc-offset-minutes`): what SQL
/// Server reports in local time differs by six hours between the data centers, so a time taken
/// as UTC, or converted with the wrong instance's offset, shows in the drill's loss-window checks.
pub const DC1_UTC_OFFSET_MINUTES: i32 = 60;
/// See [`DC1_UTC_OFFSET_MINUTES`].
pub const DC2_UTC_OFFSET_MINUTES: i32 = -300;

/// The UTC offset of the SQL hosts in `dc` (`"dc1"` or `"dc2"`).
pub fn utc_offset_minutes(dc: &str) -> i32 {
    if dc == "dc1" {
        DC1_UTC_OFFSET_MINUTES
    } else {
        DC2_UTC_OFFSET_MINUTES
    }
}

/// The shell agent of DC1.
pub const SHELL_DC1: &str = "fe01.dc1.lab";
/// The shell agent of DC2.
pub const SHELL_DC2: &str = "fe01.dc2.lab";

/// One pool of the lab and everything named after it.
#[derive(Debug, Clone)]
pub struct PoolLayout {
    /// 1-based index.
    pub index: usize,
    /// Pool FQDN.
    pub fqdn: String,
    /// Agent id and @@SERVERNAME of the primary SQL host (DC1).
    pub primary: String,
    /// Agent id and @@SERVERNAME of the backup SQL host (DC2).
    pub backup: String,
    /// Agent id and @@SERVERNAME of the primary's mirror (DC1), when the lab runs mirrors.
    pub primary_mirror: Option<String>,
    /// Agent id and @@SERVERNAME of the backup's mirror (DC2), when the lab runs mirrors.
    pub backup_mirror: Option<String>,
    /// The chat server in DC1.
    pub chat_dc1: String,
    /// The chat server in DC2.
    pub chat_dc2: String,
    /// The log-shipping share (in DC1).
    pub share: PathBuf,
    /// The copy folder on the backup host (DC2).
    pub copy_dir: PathBuf,
}

/// Every name of a lab with `pools` pools under `files` (the agents' files root), with or
/// without mirror instances.
pub fn layout(pools: usize, files: &Path, mirrors: bool) -> Vec<PoolLayout> {
    (1..=pools)
        .map(|i| {
            let fqdn = format!("pchat{i:02}.lab.local");
            PoolLayout {
                index: i,
                primary: format!("sql-p{i}.dc1.lab"),
                backup: format!("sql-p{i}.dc2.lab"),
                primary_mirror: mirrors.then(|| format!("sqlm-p{i}.dc1.lab")),
                backup_mirror: mirrors.then(|| format!("sqlm-p{i}.dc2.lab")),
                chat_dc1: format!("pc-p{i}.dc1.lab"),
                chat_dc2: format!("pc-p{i}.dc2.lab"),
                share: dc1_files(files).join("share").join(&fqdn),
                copy_dir: files.join("dc2").join("copy").join(&fqdn),
                fqdn,
            }
        })
        .collect()
}

impl PoolLayout {
    /// Every SQL instance of the pool with its data center: primary, backup, mirrors.
    pub fn instances(&self) -> Vec<(&str, &'static str)> {
        let mut out = vec![
            (self.primary.as_str(), "dc1"),
            (self.backup.as_str(), "dc2"),
        ];
        if let Some(m) = &self.primary_mirror {
            out.push((m.as_str(), "dc1"));
        }
        if let Some(m) = &self.backup_mirror {
            out.push((m.as_str(), "dc2"));
        }
        out
    }

    /// The SQL instances in DC1.
    pub fn dc1_instances(&self) -> Vec<String> {
        self.instances()
            .into_iter()
            .filter(|(_, dc)| *dc == "dc1")
            .map(|(id, _)| id.to_string())
            .collect()
    }
}

/// The part of the files root that lives in DC1 (lost with it).
pub fn dc1_files(files: &Path) -> PathBuf {
    files.join("dc1")
}

/// Every agent id with its data center.
pub fn agents(pools: &[PoolLayout]) -> Vec<(String, &'static str)> {
    let mut out = vec![
        (SHELL_DC1.to_string(), "dc1"),
        (SHELL_DC2.to_string(), "dc2"),
    ];
    for p in pools {
        out.extend(
            p.instances()
                .into_iter()
                .map(|(id, dc)| (id.to_string(), dc)),
        );
    }
    out
}

/// The topology file: `ports` gives each SQL agent's sqlsim port (`host,port` instance strings,
/// so FB-6's latency gate measures the right port).
pub fn topology_toml(pools: &[PoolLayout], port: impl Fn(&str) -> u16) -> String {
    let mut t = String::new();
    for (id, dc) in agents(pools) {
        t.push_str(&format!(
            "[[agent]]\nid = \"{id}\"\ndatacenter = \"{dc}\"\n\n"
        ));
    }
    for p in pools {
        let mut mirrors = String::new();
        for (role, id) in [
            ("primary_mirror", &p.primary_mirror),
            ("backup_mirror", &p.backup_mirror),
        ] {
            if let Some(id) = id {
                mirrors.push_str(&format!(
                    "{role} = {{ agent = \"{id}\", instance = \"{id},{}\" }}\n",
                    port(id)
                ));
            }
        }
        t.push_str(&format!(
            r#"[[pool]]
fqdn = "{fqdn}"
primary_dc = "dc1"
backup_dc = "dc2"
databases = ["mgc", "mgccomp"]
share = "{share}"
copy_dir = "{copy}"

[pool.lync_shell]
dc1 = ["{SHELL_DC1}"]
dc2 = ["{SHELL_DC2}"]

[pool.sql]
primary = {{ agent = "{primary}", instance = "{primary},{pport}" }}
backup = {{ agent = "{backup}", instance = "{backup},{bport}" }}
{mirrors}
[pool.chat_servers]
dc1 = ["{c1}"]
dc2 = ["{c2}"]

"#,
            fqdn = p.fqdn,
            share = p.share.display(),
            copy = p.copy_dir.display(),
            primary = p.primary,
            backup = p.backup,
            pport = port(&p.primary),
            bport = port(&p.backup),
            c1 = p.chat_dc1,
            c2 = p.chat_dc2,
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use failback_coordinator::topology::Topology;

    #[test]
    fn the_lab_topology_is_one_the_coordinator_accepts() {
        for n in [1, 3, 20] {
            for mirrors in [false, true] {
                let pools = layout(n, Path::new("/lab/files"), mirrors);
                let text = topology_toml(&pools, |_| 14330);
                let t = Topology::parse(Path::new("lab.toml"), &text)
                    .unwrap_or_else(|e| panic!("{n} pools: {e}\n{text}"));
                assert_eq!(t.pools.len(), n);
                let per_pool = if mirrors { 4 } else { 2 };
                assert_eq!(t.agents.len(), 2 + per_pool * n);
                assert_eq!(t.pools[0].sql.len(), per_pool, "{text}");
            }
        }
    }

    #[test]
    fn the_share_lives_in_dc1_and_the_copy_folders_in_dc2() {
        let files = Path::new("/lab/files");
        let pools = layout(2, files, true);
        for p in &pools {
            assert!(p.share.starts_with(dc1_files(files)), "{p:?}");
            assert!(!p.copy_dir.starts_with(dc1_files(files)), "{p:?}");
        }
        assert_ne!(pools[0].share, pools[1].share);
        assert_ne!(pools[0].copy_dir, pools[1].copy_dir);
    }
}
