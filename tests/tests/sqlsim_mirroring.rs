//! Mirroring between two sims sharing a registry file: the admin starts a session on the
//! principal; both sides show their role in sys.database_mirroring (pchat-dr.md §6.1 query), the
//! mirror copy stays RESTORING and neither side can be restored over (3104); `SET PARTNER OFF` on
//! either side clears both, after which the former mirror can be recovered; `SET PARTNER
//! FAILOVER` on a synchronized principal swaps the roles.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ADMIN_FLAGS, Sim, error_code, ok, rows};

const MIRRORING: &str =
    "SELECT d.name, m.mirroring_guid, m.mirroring_role_desc, m.mirroring_state_desc,
       m.mirroring_partner_name, m.mirroring_partner_instance, m.mirroring_witness_name,
       m.mirroring_witness_state_desc, m.mirroring_safety_level_desc
FROM sys.database_mirroring AS m JOIN sys.databases AS d ON d.database_id = m.database_id
WHERE d.name IN (N'mgc', N'mgccomp');";

fn start(dir: &Path, share: &Path, registry: &Path, name: &str) -> Sim {
    let map = format!(r"\\fs\ls={}", share.display());
    let reg = registry.display().to_string();
    let mut flags: Vec<&str> = ADMIN_FLAGS.to_vec();
    flags.extend([
        "--server-name",
        name,
        "--path-map",
        &map,
        "--mirror-registry",
        &reg,
        "--db-size-mb",
        "1",
    ]);
    Sim::start(dir, &flags)
}

type Conn = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

async fn role(c: &mut Conn) -> (Option<String>, Option<String>, Option<String>) {
    let r = rows(c, MIRRORING).await;
    assert_eq!(r.len(), 1);
    let s = |n: &str| r[0].get::<&str, _>(n).map(str::to_string);
    (
        s("mirroring_role_desc"),
        s("mirroring_state_desc"),
        s("mirroring_partner_instance"),
    )
}

async fn state(c: &mut Conn) -> String {
    rows(
        c,
        "SELECT state_desc FROM sys.databases WHERE name = N'mgc'",
    )
    .await[0]
        .get::<&str, _>(0)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn mirroring_roles_restrictions_and_partner_off() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let registry = dir.path().join("mirroring.json");
    let a = start(&dir.path().join("a"), &share, &registry, "SQLA");
    let b = start(&dir.path().join("b"), &share, &registry, "SQLB");
    let mut ca = a.connect().await;
    let mut cb = b.connect().await;
    ok(&mut ca, "CREATE DATABASE mgc").await;
    ok(
        &mut ca,
        "INSERT INTO mgc.dbo.Messages (room, author, body) VALUES (N'r', N'a', N'b')",
    )
    .await;
    ok(&mut ca, r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\f.bak'").await;
    ok(&mut ca, r"BACKUP LOG mgc TO DISK = N'\\fs\ls\l.trn'").await;
    ok(
        &mut cb,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\f.bak' WITH NORECOVERY",
    )
    .await;
    ok(
        &mut cb,
        r"RESTORE LOG mgc FROM DISK = N'\\fs\ls\l.trn' WITH NORECOVERY",
    )
    .await;
    // Not mirrored yet: every mirroring column NULL.
    assert_eq!(role(&mut ca).await, (None, None, None));
    // Real mirroring setup needs endpoints the sims do not have.
    assert_eq!(
        error_code(
            &mut ca,
            "ALTER DATABASE mgc SET PARTNER = N'TCP://sqlb.contoso.com:5022'"
        )
        .await,
        1418
    );

    let mut admin_a = a.connect_admin().await;
    ok(&mut admin_a, "EXEC sqlsim.mirror N'mgc', N'SQLB'").await;
    assert_eq!(
        role(&mut ca).await,
        (
            Some("PRINCIPAL".into()),
            Some("SYNCHRONIZED".into()),
            Some("SQLB".into())
        )
    );
    assert_eq!(
        role(&mut cb).await,
        (
            Some("MIRROR".into()),
            Some("SYNCHRONIZED".into()),
            Some("SQLA".into())
        )
    );
    let r = rows(&mut cb, MIRRORING).await;
    assert_eq!(
        r[0].get::<&str, _>("mirroring_partner_name"),
        Some("TCP://SQLA:5022")
    );
    assert_eq!(
        r[0].get::<&str, _>("mirroring_safety_level_desc"),
        Some("FULL")
    );
    let guid_b = r[0].get::<tiberius::Uuid, _>("mirroring_guid");
    let r = rows(&mut ca, MIRRORING).await;
    assert_eq!(r[0].get::<tiberius::Uuid, _>("mirroring_guid"), guid_b);
    assert_eq!(state(&mut cb).await, "RESTORING");
    assert_eq!(state(&mut ca).await, "ONLINE");

    // A state change made on the principal shows on both sides.
    ok(
        &mut admin_a,
        "EXEC sqlsim.mirror N'mgc', N'SQLB', N'SUSPENDED'",
    )
    .await;
    assert_eq!(role(&mut cb).await.1.as_deref(), Some("SUSPENDED"));

    // Partners cannot be restored over or recovered.
    assert_eq!(
        error_code(&mut cb, "RESTORE DATABASE mgc WITH RECOVERY").await,
        3104
    );
    assert_eq!(
        error_code(
            &mut ca,
            r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\f.bak' WITH REPLACE",
        )
        .await,
        3104
    );

    // PARTNER OFF on the mirror side clears both; the mirror copy stays RESTORING.
    ok(&mut cb, "ALTER DATABASE [mgc] SET PARTNER OFF;").await;
    assert_eq!(role(&mut cb).await, (None, None, None));
    assert_eq!(role(&mut ca).await, (None, None, None));
    assert_eq!(state(&mut cb).await, "RESTORING");
    assert_eq!(
        error_code(&mut ca, "ALTER DATABASE [mgc] SET PARTNER OFF").await,
        1416
    );
    ok(&mut cb, "RESTORE DATABASE mgc WITH RECOVERY").await;
    assert_eq!(state(&mut cb).await, "ONLINE");
    let r = rows(&mut cb, "SELECT COUNT(*) FROM mgc.dbo.Messages").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(1));

    // A new session, ended from the principal side this time; it survives a restart meanwhile.
    ok(
        &mut cb,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\f.bak' WITH REPLACE, NORECOVERY",
    )
    .await;
    ok(&mut admin_a, "EXEC sqlsim.mirror N'mgc', N'SQLB'").await;
    let a_dir = a.data_dir.clone();
    drop((ca, admin_a));
    a.stop();
    let a = start(&a_dir, &share, &registry, "SQLA");
    let mut ca = a.connect().await;
    assert_eq!(role(&mut ca).await.0.as_deref(), Some("PRINCIPAL"));
    assert_eq!(role(&mut cb).await.0.as_deref(), Some("MIRROR"));
    ok(&mut ca, "ALTER DATABASE mgc SET PARTNER OFF").await;
    assert_eq!(role(&mut cb).await, (None, None, None));
}

/// `SET PARTNER FAILOVER` on a SYNCHRONIZED principal swaps the roles: the former principal's
/// copy becomes the RESTORING mirror, the partner's comes ONLINE as principal. sqlsim models
/// only that case and refuses the others with a 50000 naming itself (SQL Server's numbers for
/// them are not modelled); failback never sends FAILOVER, tests use it to stage a takeover.
#[tokio::test]
async fn partner_failover_swaps_the_roles() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let registry = dir.path().join("mirroring.json");
    let a = start(&dir.path().join("a"), &share, &registry, "SQLA");
    let b = start(&dir.path().join("b"), &share, &registry, "SQLB");
    let mut ca = a.connect().await;
    let mut cb = b.connect().await;
    ok(&mut ca, "CREATE DATABASE mgc").await;
    ok(&mut ca, r"BACKUP DATABASE mgc TO DISK = N'\\fs\ls\f.bak'").await;
    ok(
        &mut cb,
        r"RESTORE DATABASE mgc FROM DISK = N'\\fs\ls\f.bak' WITH NORECOVERY",
    )
    .await;
    let mut admin_a = a.connect_admin().await;
    ok(
        &mut admin_a,
        "EXEC sqlsim.mirror N'mgc', N'SQLB', N'SUSPENDED'",
    )
    .await;
    // Not synchronized: refused, nothing swapped.
    assert_eq!(
        error_code(&mut ca, "ALTER DATABASE mgc SET PARTNER FAILOVER").await,
        50000
    );
    assert_eq!(role(&mut ca).await.0.as_deref(), Some("PRINCIPAL"));
    ok(
        &mut admin_a,
        "EXEC sqlsim.mirror N'mgc', N'SQLB', N'SYNCHRONIZED'",
    )
    .await;
    // Only the principal can fail over.
    assert_eq!(
        error_code(&mut cb, "ALTER DATABASE mgc SET PARTNER FAILOVER").await,
        50000
    );
    ok(&mut ca, "ALTER DATABASE mgc SET PARTNER FAILOVER").await;
    assert_eq!(
        role(&mut ca).await,
        (
            Some("MIRROR".into()),
            Some("SYNCHRONIZED".into()),
            Some("SQLB".into())
        )
    );
    assert_eq!(state(&mut ca).await, "RESTORING");
    assert_eq!(
        role(&mut cb).await,
        (
            Some("PRINCIPAL".into()),
            Some("SYNCHRONIZED".into()),
            Some("SQLA".into())
        )
    );
    assert_eq!(state(&mut cb).await, "ONLINE");
}
