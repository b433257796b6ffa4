//! FreeTDS `tsql` and pytds (Debian's freetds-bin and python3-tds) against sqlsim: each logs in,
//! runs a batch, reads a result set and gets an error with its number. They are stricter than
//! tiberius about reply packet types, LOGINACK layout and DONE_MORE.
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
