//! `failbackctl topology check` against the shipped example and a catalogue of broken topologies:
//! valid → exit 0 with a summary; broken → exit 2, the file, the line and a message that names the
//! problem; never a panic.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use failback_tests::harness::fleet::run_ctl;

/// 1-based line of the first occurrence of `needle` in the example.
fn line_of(needle: &str) -> usize {
    let t = example();
    t[..t.find(needle).unwrap()].matches('\n').count() + 1
}

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/topology.toml"
    ))
    .unwrap()
}

/// Replaces `from` (which must occur) with `to` in the example.
fn mutate(from: &str, to: &str) -> String {
    let text = example();
    assert!(text.contains(from), "example lacks {from:?}");
    text.replacen(from, to, 1)
}

async fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topology.toml");
    std::fs::write(&file, text).unwrap();
    let out = run_ctl(
        dir.path(),
        &[
            "topology".into(),
            "check".into(),
            file.display().to_string(),
        ],
        &[],
    )
    .await
    .unwrap();
    (out.code, out.stdout, out.stderr)
}

#[tokio::test]
async fn example_topology_is_valid() {
    let (code, out, err) = check(&example()).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("valid: 1 pool(s), 8 agent(s) in data centers dc1, dc2"),
        "{out}"
    );
}

#[tokio::test]
async fn broken_topologies_are_explained() {
    let dup_agent = example().replacen(
        "[[agent]]\nid = \"fe01.dc2.contoso.com\"",
        "[[agent]]\nid = \"sql01.dc1.contoso.com\"\ndatacenter = \"dc1\"\n\n[[agent]]\nid = \"fe01.dc2.contoso.com\"",
        1,
    );
    let second_pool = {
        let t = example();
        let pool = &t[t.find("[[pool]]").unwrap()..];
        format!("{t}\n{pool}")
    };
    let pool_line = format!(":{}:", line_of("fqdn = \"pchat01"));
    let backup_line = format!(":{}:", line_of("backup         = {"));
    let first_pool = format!(
        "duplicate pool (first defined on line {})",
        line_of("fqdn = \"pchat01")
    );
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "toml syntax",
            mutate(
                "fqdn = \"pchat01.contoso.com\"",
                "fqdn = \"pchat01.contoso.com",
            ),
            vec![&pool_line, "string"],
        ),
        (
            "unknown key",
            mutate("copy_dir =", "copy_folder ="),
            vec!["unknown field `copy_folder`"],
        ),
        (
            "missing field",
            mutate("share = '\\\\fs01.contoso.com\\pchat-ls'", ""),
            vec!["missing field `share`"],
        ),
        (
            "unknown agent",
            mutate(
                "backup         = { agent = \"sql01.dc2.contoso.com\"",
                "backup         = { agent = \"sql09.dc2.contoso.com\"",
            ),
            vec![
                &backup_line,
                "sql.backup.agent",
                "unknown agent 'sql09.dc2.contoso.com'",
            ],
        ),
        (
            "duplicate agent",
            dup_agent,
            vec!["duplicate agent id (first defined on line 6)"],
        ),
        (
            "duplicate pool",
            second_pool,
            vec!["pool 'pchat01.contoso.com'", &first_pool],
        ),
        (
            "same data centers",
            mutate("backup_dc = \"dc2\"", "backup_dc = \"dc1\""),
            vec!["backup data center must differ"],
        ),
        (
            "hostile database name",
            mutate(
                "databases = [\"mgc\", \"mgccomp\"]",
                "databases = [\"mgc\", \"mgc]; DROP DATABASE x --\"]",
            ),
            vec!["is not a valid database name"],
        ),
        (
            "foreign database",
            mutate(
                "databases = [\"mgc\", \"mgccomp\"]",
                "databases = [\"chat\"]",
            ),
            vec!["'chat' is not a Persistent Chat database"],
        ),
        (
            "path escape",
            mutate(
                "copy_dir = 'D:\\PChatLogShipCopy'",
                "copy_dir = 'D:\\PChat\\..\\Windows'",
            ),
            vec!["copy_dir", "contains '..'"],
        ),
        (
            "relative path",
            mutate(
                "copy_dir = 'D:\\PChatLogShipCopy'",
                "copy_dir = 'PChatLogShipCopy'",
            ),
            vec!["is not absolute"],
        ),
        (
            "agent in the wrong data center",
            mutate(
                "primary        = { agent = \"sql01.dc1.contoso.com\"",
                "primary        = { agent = \"sql01.dc2.contoso.com\"",
            ),
            vec![
                "agent 'sql01.dc2.contoso.com' is in data center 'dc2', but this role is in 'dc1'",
            ],
        ),
        (
            "instance reused",
            mutate(
                "instance = 'sql02.dc1.contoso.com\\PCHAT'",
                "instance = 'sql01.dc1.contoso.com\\PCHAT'",
            ),
            vec!["is already sql.primary of pool"],
        ),
        (
            "shell in an unknown data center",
            mutate(
                "dc2 = [\"fe01.dc2.contoso.com\"]",
                "dc3 = [\"fe01.dc2.contoso.com\"]",
            ),
            vec!["'dc3' is neither", "no entry for data center 'dc2'"],
        ),
        (
            "invalid agent id",
            mutate("id = \"pc01.dc2.contoso.com\"", "id = \"pc01 dc2\""),
            vec!["invalid agent id"],
        ),
        (
            "no pools",
            "[[agent]]\nid = \"a1\"\ndatacenter = \"dc1\"\n".to_string(),
            vec!["no [[pool]] tables"],
        ),
        (
            "bad instance name",
            mutate(
                "instance = 'sql01.dc2.contoso.com\\PCHAT'",
                "instance = 'sql01.dc2.contoso.com,99999'",
            ),
            vec!["is not an instance name"],
        ),
        (
            "not utf-8 or binary junk",
            "\u{0}\u{1}garbage = [".to_string(),
            vec!["topology"],
        ),
    ];
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for (name, text, expected) in &cases {
        let (code, _out, err) = check(text).await;
        let ok = code == 2
            && err.contains("topology.toml")
            && expected.iter().all(|e| err.contains(e))
            && !err.contains("panicked");
        if !ok {
            failures.push(format!("case '{name}': exit {code}, stderr:\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn missing_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ctl(
        dir.path(),
        &["topology".into(), "check".into(), "nope.toml".into()],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("nope.toml") && out.stderr.contains("cannot read the file"),
        "{}",
        out.stderr
    );
}
