//! Server-local time under `--utc-offset-minutes`: GETDATE(), SYSDATETIME() and
//! CURRENT_TIMESTAMP are the host's local clock while GETUTCDATE() and SYSUTCDATETIME() stay UTC
//! and DATEPART(TZOFFSET, SYSDATETIMEOFFSET()) carries the offset (sql-docs GETDATE); a backup's
//! BackupStartDate/BackupFinishDate are the *writing* server's local time wherever the file is
//! read, and a restoring server's backupset keeps them with the writer's `time_zone` (15-minute
//! units) while its own restorehistory.restore_date is its local time; msdb's job dates are local.
//! Two instances an ocean apart: A at UTC+1 (+60), B at UTC-5 (-300).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use common::{Sim, ok, rows};

const A_OFFSET: i64 = 60;
const B_OFFSET: i64 = -300;

fn start(dir: &Path, share: &Path, name: &str, offset: i64) -> Sim {
    let map = format!(r"\\fs\ls={}", share.display());
    let offset = offset.to_string();
    Sim::start(
        dir,
        &[
            "--server-name",
            name,
            "--path-map",
            &map,
            "--db-size-mb",
            "1",
            "--utc-offset-minutes",
            &offset,
        ],
    )
}

/// `t` is `minutes` ahead of UTC now, give or take a few seconds (DATETIME rounding, test pace).
fn near(t: NaiveDateTime, minutes: i64, what: &str) {
    let expected = Utc::now().naive_utc() + TimeDelta::minutes(minutes);
    let off = (t - expected).num_milliseconds().abs();
    assert!(
        off < 10_000,
        "{what}: {t} is not UTC{minutes:+} min (expected about {expected})"
    );
}

fn dt(r: &tiberius::Row, col: &str) -> NaiveDateTime {
    r.get::<NaiveDateTime, _>(col)
        .unwrap_or_else(|| panic!("{col} is NULL"))
}

#[tokio::test]
async fn local_functions_and_columns_follow_the_offset_utc_ones_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let a = start(&tmp.path().join("a"), &share, "SQLA", A_OFFSET);
    let b = start(&tmp.path().join("b"), &share, "SQLB", B_OFFSET);

    let mut ca = a.connect().await;
    let r = &rows(
        &mut ca,
        "SELECT GETDATE() AS l1, SYSDATETIME() AS l2, CURRENT_TIMESTAMP AS l3, \
         GETUTCDATE() AS u1, SYSUTCDATETIME() AS u2, \
         DATEPART(TZOFFSET, SYSDATETIMEOFFSET()) AS tz, \
         DATEDIFF(second, GETUTCDATE(), GETDATE()) AS diff",
    )
    .await[0];
    for c in ["l1", "l2", "l3"] {
        near(dt(r, c), A_OFFSET, c);
    }
    for c in ["u1", "u2"] {
        near(dt(r, c), 0, c);
    }
    assert_eq!(r.get::<i32, _>("tz"), Some(A_OFFSET as i32));
    let diff = i64::from(r.get::<i32, _>("diff").unwrap());
    assert!((diff - A_OFFSET * 60).abs() <= 1, "DATEDIFF {diff} s");

    // A backup written on A carries A's local clock, read on A or on B.
    ok(&mut ca, "CREATE DATABASE mgc").await;
    ok(
        &mut ca,
        r"BACKUP DATABASE [mgc] TO DISK = N'\\fs\ls\mgc_full.bak' WITH FORMAT, INIT, CHECKSUM",
    )
    .await;
    let ha = &rows(
        &mut ca,
        r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\mgc_full.bak'",
    )
    .await[0];
    near(dt(ha, "BackupStartDate"), A_OFFSET, "HEADERONLY on A");
    near(dt(ha, "BackupFinishDate"), A_OFFSET, "HEADERONLY on A");
    let mut cb = b.connect().await;
    let hb = &rows(
        &mut cb,
        r"RESTORE HEADERONLY FROM DISK = N'\\fs\ls\mgc_full.bak'",
    )
    .await[0];
    near(
        dt(hb, "BackupFinishDate"),
        A_OFFSET,
        "HEADERONLY of A's file on B",
    );

    // B's msdb after restoring it: the set's dates and zone are A's, the restore's date is B's.
    ok(
        &mut cb,
        r"RESTORE DATABASE [mgc] FROM DISK = N'\\fs\ls\mgc_full.bak' WITH NORECOVERY",
    )
    .await;
    let r = &rows(
        &mut cb,
        "SELECT TOP 1 h.restore_date, b.backup_finish_date, b.time_zone \
         FROM msdb.dbo.restorehistory AS h \
         JOIN msdb.dbo.backupset AS b ON b.backup_set_id = h.backup_set_id \
         ORDER BY h.restore_history_id DESC",
    )
    .await[0];
    near(
        dt(r, "restore_date"),
        B_OFFSET,
        "restorehistory.restore_date on B",
    );
    near(
        dt(r, "backup_finish_date"),
        A_OFFSET,
        "backupset.backup_finish_date on B",
    );
    assert_eq!(
        r.get::<i16, _>("time_zone"),
        Some((A_OFFSET / 15) as i16),
        "backupset.time_zone is the writer's, in 15-minute units"
    );

    // msdb's job dates are local.
    ok(&mut cb, "EXEC msdb.dbo.sp_add_job @job_name = N'times'").await;
    let r = &rows(
        &mut cb,
        "SELECT date_created FROM msdb.dbo.sysjobs WHERE name = N'times'",
    )
    .await[0];
    near(dt(r, "date_created"), B_OFFSET, "sysjobs.date_created on B");
}
