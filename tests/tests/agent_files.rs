//! The real agent's files backend through a session: every files operation, hostile paths refused
//! before anything is touched, and a source that does not match its recorded SHA-256 never copied.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use failback_proto::pb;
use failback_proto::pb::operation::Kind as K;
use failback_proto::pb::operation_output::Kind as Out;
use failback_tests::harness::fake_coordinator::{FakeCoordinator, FakeSession};
use failback_tests::harness::fleet::{COORDINATOR, Fleet, three_agent_topology};
use failback_tests::harness::ops::{error, output};

const AGENT: &str = "sql01.dc2.lab";

async fn session() -> (Fleet, FakeCoordinator, FakeSession) {
    let (agents, topology) = three_agent_topology();
    let mut fleet = Fleet::create(None, agents, &topology, Duration::from_millis(500))
        .await
        .unwrap();
    let mut fake = FakeCoordinator::start(&fleet.certs, COORDINATOR, fleet.coordinator_port)
        .await
        .unwrap();
    fleet.start_agent(AGENT).unwrap();
    let s = fake.next_session(Duration::from_secs(20)).await.unwrap();
    s.welcome(3).await.unwrap();
    (fleet, fake, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn files_operations_through_the_session() {
    let (fleet, _fake, mut s) = session().await;
    let root = fleet.files_root();
    std::fs::create_dir_all(root.join("share")).unwrap();
    std::fs::create_dir_all(root.join("copy")).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("share/mgc_1.trn"), &data).unwrap();
    std::fs::write(root.join("share/notes.txt"), b"x").unwrap();
    let p = |rel: &str| root.join(rel).display().to_string();

    let Out::FileInfo(st) = output(
        s.call(
            "f/stat",
            3,
            K::FileStat(pb::FileStat {
                path: p("share/mgc_1.trn"),
            }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    assert!(st.exists && !st.is_dir && st.size == data.len() as u64);

    let Out::Checksum(sum) = output(
        s.call(
            "f/sum",
            3,
            K::FileChecksum(pb::FileChecksum {
                path: p("share/mgc_1.trn"),
            }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(sum.sha256.len(), 64);

    let Out::FileListing(list) = output(
        s.call(
            "f/list",
            3,
            K::FileList(pb::FileList {
                directory: p("share"),
                pattern: "*.trn".into(),
            }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(list.files.len(), 1);
    assert!(list.files[0].path.ends_with("mgc_1.trn"));

    let copy = K::FileCopy(pb::FileCopy {
        source: p("share/mgc_1.trn"),
        destination: p("copy/mgc_1.trn"),
        expected_sha256: sum.sha256.clone(),
    });
    let Out::Copy(c) = output(s.call("f/copy", 3, copy.clone()).await.unwrap()) else {
        panic!()
    };
    assert_eq!(c.sha256, sum.sha256);
    assert_eq!(std::fs::read(root.join("copy/mgc_1.trn")).unwrap(), data);

    // Corrupt the source: a copy that expects the recorded hash refuses and leaves nothing.
    let mut bad = data.clone();
    bad[1_000_000] ^= 0x40;
    std::fs::write(root.join("share/mgc_1.trn"), &bad).unwrap();
    let copy2 = K::FileCopy(pb::FileCopy {
        source: p("share/mgc_1.trn"),
        destination: p("copy/mgc_2.trn"),
        expected_sha256: sum.sha256.clone(),
    });
    let e = error(s.call("f/copy2", 3, copy2).await.unwrap());
    assert!(!e.retryable, "{e:?}");
    assert!(!root.join("copy/mgc_2.trn").exists());
    assert!(!root.join("copy/mgc_2.trn.partial").exists());

    // A copy cut halfway (the agent died, the share dropped) left a `.partial`: a new copy
    // resumes from it and the result's SHA-256 matches the source.
    std::fs::write(root.join("copy/mgc_3.trn.partial"), &data[..data.len() / 2]).unwrap();
    std::fs::write(root.join("share/mgc_3.trn"), &data).unwrap();
    let copy3 = K::FileCopy(pb::FileCopy {
        source: p("share/mgc_3.trn"),
        destination: p("copy/mgc_3.trn"),
        expected_sha256: sum.sha256.clone(),
    });
    let Out::Copy(c3) = output(s.call("f/copy3", 3, copy3).await.unwrap()) else {
        panic!()
    };
    assert_eq!(c3.resumed_from, (data.len() / 2) as u64, "{c3:?}");
    assert_eq!(c3.sha256, sum.sha256);
    assert_eq!(std::fs::read(root.join("copy/mgc_3.trn")).unwrap(), data);
    assert!(!root.join("copy/mgc_3.trn.partial").exists());

    let Out::Space(space) = output(
        s.call(
            "f/space",
            3,
            K::FreeSpace(pb::FreeSpace { path: p("copy") }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    assert!(space.available_bytes > 0);

    let Out::Done(d) = output(
        s.call(
            "f/del",
            3,
            K::FileDelete(pb::FileDelete {
                path: p("share/notes.txt"),
            }),
        )
        .await
        .unwrap(),
    ) else {
        panic!()
    };
    assert!(d.changed);
    assert!(!root.join("share/notes.txt").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_are_refused_and_touch_nothing() {
    let (fleet, _fake, mut s) = session().await;
    let root = fleet.files_root();
    let outside = fleet.dir.join("outside.txt");
    std::fs::write(&outside, b"secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&fleet.dir, root.join("escape")).unwrap();
    let hostile = [
        format!("{}/../outside.txt", root.display()),
        outside.display().to_string(),
        "relative/path".to_string(),
        format!("{}/escape/outside.txt", root.display()),
        "C:\\..\\Windows\\win.ini".to_string(),
        "\\\\server\\share\\..\\..\\x".to_string(),
        format!("{}/{}", root.display(), "x".repeat(5000)),
    ];
    for (n, path) in hostile.iter().enumerate() {
        for (m, kind) in [
            K::FileStat(pb::FileStat { path: path.clone() }),
            K::FileDelete(pb::FileDelete { path: path.clone() }),
            K::FileCopy(pb::FileCopy {
                source: outside.display().to_string(),
                destination: path.clone(),
                expected_sha256: String::new(),
            }),
        ]
        .into_iter()
        .enumerate()
        {
            let r = s.call(&format!("h/{n}/{m}"), 3, kind).await.unwrap();
            let e = error(r);
            assert!(
                matches!(e.kind(), pb::ErrorKind::InvalidArgument),
                "{path}: {e:?}"
            );
        }
    }
    assert_eq!(
        std::fs::read(&outside).unwrap(),
        b"secret",
        "nothing outside the roots changed"
    );
}
