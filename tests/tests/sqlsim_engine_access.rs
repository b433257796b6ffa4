//! The Database Engine service account's folder access in sqlsim (`sqlsim.engine_access`), read
//! off the wire with a bare TDS client because tiberius reports only a batch's first error:
//! BACKUP to a folder the account may not write is Msg 3201 state 1 ("create backup file") with
//! operating system error 5, then 3013, and creates nothing; the longest rule wins, `default`
//! removes one, the table survives a restart, and for `sa` the procedure does not exist (2812),
//! as on a real SQL Server.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/tds_raw.rs"]
mod tds_raw;

use std::path::Path;

use common::{ADMIN_FLAGS, PW, Sim, exec};
use tds_raw::{RawTds, errors};

fn start(dir: &Path, share: &Path) -> Sim {
    let map = format!(r"\\fs\ls={}", share.display());
    let mut flags = vec!["--path-map", &map, "--db-size-mb", "1"];
    flags.extend_from_slice(&ADMIN_FLAGS);
    Sim::start(dir, &flags)
}

/// Runs an admin statement (through tiberius: the procedure answers with its table's rows).
async fn admin(sim: &Sim, sql: &str) {
    let mut c = sim.connect_admin().await;
    exec(&mut c, sql).await.unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn backup_to_a_folder_the_engine_may_not_write_is_3201_then_3013() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(share.join("ok")).unwrap();
    let data = dir.path().join("a");
    let sim = start(&data, &share);
    let mut sa = RawTds::login(sim.port(), "sa", PW, "master").await;

    // For sa the procedure does not exist, as any sqlsim.* procedure.
    let m = sa
        .batch(r"EXEC sqlsim.engine_access N'\\fs\ls', N'none'")
        .await;
    assert_eq!(errors(&m).first().map(|e| e.0), Some(2812), "{m:?}");

    admin(&sim, r"EXEC sqlsim.engine_access N'\\fs\ls', N'read'").await;
    admin(&sim, r"EXEC sqlsim.engine_access N'\\fs\ls\ok', N'rw'").await;
    let m = sa
        .batch(r"BACKUP DATABASE [model] TO DISK = N'\\fs\ls\p.bak' WITH COPY_ONLY")
        .await;
    assert_eq!(errors(&m), vec![(3201, 1), (3013, 1)], "{m:?}");
    let texts: Vec<&str> = m
        .iter()
        .filter(|x| x.is_error)
        .map(|x| x.text.as_str())
        .collect();
    assert_eq!(
        texts,
        [
            r"Cannot open backup device '\\fs\ls\p.bak'. Operating system error 5(Access is denied.).",
            "BACKUP DATABASE is terminating abnormally.",
        ]
    );
    assert_eq!(names(&share), ["ok"], "nothing written, no temporary file");
    // The longer rule wins: the subfolder may be written.
    let m = sa
        .batch(r"BACKUP DATABASE [model] TO DISK = N'\\fs\ls\ok\p.bak' WITH COPY_ONLY")
        .await;
    assert!(errors(&m).is_empty(), "{m:?}");
    assert_eq!(names(&share.join("ok")), ["p.bak"]);

    // The table survives a restart.
    sim.stop();
    let sim = start(&data, &share);
    let mut sa = RawTds::login(sim.port(), "sa", PW, "master").await;
    let m = sa
        .batch(r"BACKUP DATABASE [model] TO DISK = N'\\fs\ls\p2.bak'")
        .await;
    assert_eq!(errors(&m).first(), Some(&(3201, 1)), "{m:?}");
    // `default` removes the rule: written again.
    admin(&sim, r"EXEC sqlsim.engine_access N'\\fs\ls', N'default'").await;
    let m = sa
        .batch(r"BACKUP DATABASE [model] TO DISK = N'\\fs\ls\p.bak' WITH COPY_ONLY")
        .await;
    assert!(errors(&m).is_empty(), "{m:?}");
    assert!(share.join("p.bak").is_file());
}
