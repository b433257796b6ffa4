//! FreeTDS `tsql` and pytds (Debian's freetds-bin and python3-tds) against sqlsim: each logs in,
//! runs a batch, reads a result set and gets an error with its number. They are stricter than
//! tiberius about reply packet types, LOGINACK layout and DONE_MORE. Both also see a refused
//! RESTORE / BACKUP as SQL Server sends it, every message in order: `WITH CHECKSUM` on a set
//! without checksums (3187 then 3013) and a backup inside a transaction (3021 then 3013).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{PW, Sim};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a command with `stdin`, returning (status ok, stdout + stderr).
async fn run(mut cmd: Command, stdin: &str) -> (bool, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {cmd:?}: {e} (install freetds-bin / python3-tds)")
    });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(CLIENT_DEADLINE, child.wait_with_output())
        .await
        .expect("client timed out")
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn freetds_tsql_batch_result_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut cmd = Command::new("tsql");
    cmd.args([
        "-H",
        "127.0.0.1",
        "-p",
        &sim.port().to_string(),
        "-U",
        "sa",
        "-P",
        PW,
    ]);
    cmd.env("TDSVER", "7.4");
    let batch = "CREATE DATABASE chat\nUSE chat\nINSERT INTO dbo.Messages (room, author, body) VALUES (N'r', N'tsql', N'hello from tsql')\ngo\n\
                 SELECT author AS who, body FROM dbo.Messages\ngo\nSELECT * FROM dbo.NoSuchTable\ngo\nexit\n";
    let (_, out) = run(cmd, batch).await;
    assert!(out.contains("who\tbody"), "{out}");
    assert!(out.contains("tsql\thello from tsql"), "{out}");
    assert!(out.contains("Msg 208"), "{out}");
    assert!(
        out.contains("Invalid object name 'dbo.NoSuchTable'."),
        "{out}"
    );
    let log = std::fs::read_to_string(dir.path().join("statements.jsonl")).unwrap();
    assert!(log.contains("hello from tsql"));
}

#[tokio::test]
async fn pytds_batch_rpc_result_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let script = format!(
        r#"
import pytds, json
conn = pytds.connect(server='127.0.0.1', port={port}, user='sa', password='{pw}', autocommit=False)
cur = conn.cursor()
out = {{}}
cur.execute("CREATE DATABASE py; USE py")
cur.execute("INSERT INTO dbo.Messages (room, author, body) VALUES (%s, %s, %s)", ('lobby', 'pytds', 'hi'))
out['inserted'] = cur.rowcount
conn.commit()
cur.execute("SELECT COUNT(*) AS n, MAX(id) AS top_id FROM dbo.Messages")
out['cols'] = [d[0] for d in cur.description]
out['row'] = list(cur.fetchone())
cur.execute("SELECT name, state_desc FROM sys.databases WHERE name = %s", ('py',))
out['db'] = list(cur.fetchone())
try:
    cur.execute("EXEC dbo.sp_missing")
except pytds.Error as e:
    out['error'] = e.number
cur.execute("SELECT @@SERVERNAME")
out['after_error'] = cur.fetchone()[0]
conn.close()
print(json.dumps(out))
"#,
        port = sim.port(),
        pw = PW
    );
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(script);
    let (ok, out) = run(cmd, "").await;
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{out}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["inserted"], 1, "{v}");
    assert_eq!(v["cols"], serde_json::json!(["n", "top_id"]));
    assert_eq!(v["row"], serde_json::json!([1, 1]));
    assert_eq!(v["db"], serde_json::json!(["py", "ONLINE"]));
    assert_eq!(v["error"], 2812);
    assert_eq!(v["after_error"], "SQLSIM");
}

/// Where the client-side backup tests keep their files: `C:\b` of the sim.
fn backup_folder(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("fs/C/b")).unwrap();
}

/// `Msg N` lines of tsql's output for errors (INFO messages, severity 0, left out), in order.
fn tsql_msgs(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim_start().strip_prefix("Msg "))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .filter(|m| !m.contains("(severity 0,"))
        .collect()
}

#[tokio::test]
async fn freetds_tsql_sees_3187_and_3021_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    backup_folder(dir.path());
    let mut cmd = Command::new("tsql");
    cmd.args([
        "-H",
        "127.0.0.1",
        "-p",
        &sim.port().to_string(),
        "-U",
        "sa",
        "-P",
        PW,
    ]);
    cmd.env("TDSVER", "7.4");
    let batch = "CREATE DATABASE chat\ngo\nBACKUP DATABASE chat TO DISK = N'C:\\b\\chat.bak'\ngo\n\
                 RESTORE VERIFYONLY FROM DISK = N'C:\\b\\chat.bak' WITH CHECKSUM\ngo\n\
                 BEGIN TRAN\nBACKUP DATABASE chat TO DISK = N'C:\\b\\tran.bak'\ngo\nROLLBACK\ngo\nexit\n";
    let (_, out) = run(cmd, batch).await;
    assert_eq!(
        tsql_msgs(&out),
        vec![
            "3187 (severity 16, state",
            "3013 (severity 16, state",
            "3021 (severity 16, state",
            "3013 (severity 16, state",
        ],
        "{out}"
    );
    assert!(
        out.contains("RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information."),
        "{out}"
    );
    assert!(
        out.contains("VERIFY DATABASE is terminating abnormally."),
        "{out}"
    );
    assert!(
        out.contains("Cannot perform a backup or restore operation within a transaction."),
        "{out}"
    );
    assert!(
        out.contains("BACKUP DATABASE is terminating abnormally."),
        "{out}"
    );
    assert!(!dir.path().join("fs/C/b/tran.bak").exists());
}

#[tokio::test]
async fn pytds_sees_3187_and_3021_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    backup_folder(dir.path());
    let script = format!(
        r#"
import pytds, json
conn = pytds.connect(server='127.0.0.1', port={port}, user='sa', password='{pw}', autocommit=True)
cur = conn.cursor()
out = {{}}
cur.execute("CREATE DATABASE py")
cur.execute(r"BACKUP DATABASE py TO DISK = N'C:\b\py.bak'")
def refused(sql):
    try:
        cur.execute(sql)
        return None
    except pytds.Error as e:
        msgs = [[ex.number, ex.state, ex.severity] for _, ex in (cur.messages or [])]
        return {{'number': e.number, 'text': str(e), 'messages': msgs}}
out['checksum'] = refused(r"RESTORE VERIFYONLY FROM DISK = N'C:\b\py.bak' WITH CHECKSUM")
out['tran'] = refused(r"BEGIN TRAN; BACKUP DATABASE py TO DISK = N'C:\b\t.bak'")
cur.execute("ROLLBACK")
conn.close()
print(json.dumps(out))
"#,
        port = sim.port(),
        pw = PW
    );
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(script);
    let (ok, out) = run(cmd, "").await;
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{out}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    // pytds raises the last error (3013) with every message's text; cursor.messages lists them.
    assert_eq!(v["checksum"]["number"], 3013, "{v}");
    assert_eq!(
        v["checksum"]["messages"],
        serde_json::json!([[3187, 1, 16], [3013, 1, 16]]),
        "{v}"
    );
    assert!(
        v["checksum"]["text"]
            .as_str()
            .unwrap()
            .starts_with("RESTORE WITH CHECKSUM cannot be specified"),
        "{v}"
    );
    assert_eq!(v["tran"]["number"], 3013, "{v}");
    assert_eq!(
        v["tran"]["messages"],
        serde_json::json!([[3021, 1, 16], [3013, 1, 16]]),
        "{v}"
    );
}
