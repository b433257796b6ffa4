//! Tests of the `files` backend on real files in temporary directories: hostile paths refused
//! without side effects, copies verified, resumed and refused, listing, retention, free space.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::*;

/// A temporary tree: `root/` (the only configured root, with `share/` and `copy/`) and
/// `outside/` beside it.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        for d in [&root, &root.join("share"), &root.join("copy"), &outside] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(outside.join("secret"), b"top secret").unwrap();
        Tree {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn files(&self) -> Files {
        Files::new(FileRoots::new(&[self.root.to_str().unwrap()]).unwrap())
    }

    /// `root/<rel>` as the coordinator would send it.
    fn p(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root.display())
    }

    /// Every path under the temporary directory, to prove nothing was created.
    fn snapshot(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                out.push(e.path());
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root.parent().unwrap(), &mut out);
        out.sort();
        out
    }
}

/// Deterministic pseudo-random bytes (not all equal, so a shifted copy cannot pass).
fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

const SIZE: usize = 3 * (1 << 20) + 12_345;

#[tokio::test]
async fn hostile_paths_refused_and_nothing_created() {
    let t = Tree::new();
    let files = t.files();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&t.outside, t.root.join("link")).unwrap();
        std::os::unix::fs::symlink(t.outside.join("new"), t.root.join("dangling")).unwrap();
        std::os::unix::fs::symlink(t.outside.join("evil"), t.root.join("copy/x.bak.partial"))
            .unwrap();
    }
    std::fs::write(t.root.join("share/x.bak"), b"backup").unwrap();
    let before = t.snapshot();
    let mut hostile = vec![
        t.p("../outside/secret"),
        t.p("share/../../outside/secret"),
        t.outside.join("secret").display().to_string(),
        "/etc/passwd".to_string(),
        t.p("share/a\0b"),
        t.p("share/a\nb"),
        t.p(&"x".repeat(300)),
        t.p(&"abc/".repeat(1100)),
        r"C:\..\x".to_string(),
        r"\\server\share\..\..".to_string(),
        r"\\?\GLOBALROOT\Device\HarddiskVolume1".to_string(),
        "share/x.bak".to_string(),
        String::new(),
    ];
    if cfg!(unix) {
        hostile.push(t.p("link/secret"));
        hostile.push(t.p("link/new-file"));
        hostile.push(t.p("link"));
        hostile.push(t.p("dangling"));
    }
    for bad in &hostile {
        let shown: String = bad
            .chars()
            .take_while(|c| !c.is_control())
            .take(40)
            .collect();
        let check = |what: &str, e: FilesError| {
            assert!(e.is_invalid_argument(), "{what} {bad:?}: {e}");
            assert!(!e.is_retryable(), "{what} {bad:?}: {e}");
            let msg: String = e.to_string().chars().filter(|c| !c.is_control()).collect();
            assert!(
                msg.contains(&shown) || shown.is_empty(),
                "{what}: '{msg}' does not name '{shown}'"
            );
            assert!(!msg.contains("top secret"), "{msg}");
        };
        check("stat", files.stat(bad).await.unwrap_err());
        check("checksum", files.checksum(bad, |_| {}).await.unwrap_err());
        check("list", files.list(bad, "*").await.unwrap_err());
        check("delete", files.delete(bad).await.unwrap_err());
        check(
            "retention",
            files
                .delete_older_than(bad, "*", Duration::ZERO)
                .await
                .unwrap_err(),
        );
        check("free_space", files.free_space(bad).await.unwrap_err());
        check(
            "copy to",
            files
                .copy(&t.p("share/x.bak"), bad, None, |_| {})
                .await
                .unwrap_err(),
        );
        let e = files
            .copy(bad, &t.p("copy/y.bak"), None, |_| {})
            .await
            .unwrap_err();
        check("copy from", e);
    }
    if cfg!(unix) {
        // The destination's .partial is a link out of the root: refused, nothing written there.
        let e = files
            .copy(&t.p("share/x.bak"), &t.p("copy/x.bak"), None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, FilesError::SymlinkEscape { .. }), "{e}");
    }
    assert_eq!(t.snapshot(), before, "a refused operation changed the tree");
    assert_eq!(
        std::fs::read(t.outside.join("secret")).unwrap(),
        b"top secret"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn links_inside_the_root_are_followed_but_not_deleted() {
    let t = Tree::new();
    let files = t.files();
    std::fs::write(t.root.join("share/a.trn"), b"log").unwrap();
    std::os::unix::fs::symlink(t.root.join("share"), t.root.join("alias")).unwrap();
    let s = files.stat(&t.p("alias/a.trn")).await.unwrap();
    assert!(s.exists && s.size == 3);
    let e = files.delete(&t.p("alias")).await.unwrap_err();
    assert!(matches!(e, FilesError::WrongType { .. }), "{e}");
    assert!(t.root.join("alias").exists());
    // A .partial that is a link (even inside the root) is never written through.
    std::fs::write(t.root.join("share/c.trn"), b"other").unwrap();
    std::os::unix::fs::symlink(
        t.root.join("share/c.trn"),
        t.root.join("copy/b.trn.partial"),
    )
    .unwrap();
    let e = files
        .copy(&t.p("share/a.trn"), &t.p("copy/b.trn"), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::WrongType { .. }), "{e}");
    assert_eq!(std::fs::read(t.root.join("share/c.trn")).unwrap(), b"other");
    // A .partial that is the source itself (through a link) is refused too.
    std::os::unix::fs::symlink(
        t.root.join("share/a.trn"),
        t.root.join("copy/d.trn.partial"),
    )
    .unwrap();
    let e = files
        .copy(&t.p("share/a.trn"), &t.p("copy/d.trn"), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::InvalidArgument { .. }), "{e}");
    assert_eq!(std::fs::read(t.root.join("share/a.trn")).unwrap(), b"log");
}

#[tokio::test]
async fn roots_are_checked_when_built_and_when_used() {
    let e = FileRoots::new(&[r"D:\PChatLogShipCopy"]).unwrap_err();
    if cfg!(unix) {
        assert!(e.to_string().contains("non-Windows"), "{e}");
    }
    for bad in ["relative", "/", "/srv/../etc"] {
        assert!(matches!(
            FileRoots::new(&[bad]).unwrap_err(),
            FilesError::InvalidRoot { .. }
        ));
    }
    let t = Tree::new();
    let gone = t.root.join("not-mounted");
    let files = Files::new(FileRoots::new(&[gone.to_str().unwrap()]).unwrap());
    let e = files.stat(&t.p("not-mounted/x")).await.unwrap_err();
    assert!(
        matches!(e, FilesError::RootUnavailable { .. }) && e.is_retryable(),
        "{e}"
    );
    let none = Files::new(FileRoots::default());
    let e = none.stat(&t.p("share")).await.unwrap_err();
    assert!(e.to_string().contains("none configured"), "{e}");
}

#[tokio::test]
async fn stat_checksum_and_free_space() {
    let t = Tree::new();
    let files = t.files();
    std::fs::write(t.root.join("share/abc"), b"abc").unwrap();
    let s = files.stat(&t.p("share/abc")).await.unwrap();
    assert!(s.exists && !s.is_dir && s.size == 3 && s.modified.is_some());
    assert!(files.stat(&t.p("share")).await.unwrap().is_dir);
    assert!(!files.stat(&t.p("share/none")).await.unwrap().exists);
    let mut seen = Vec::new();
    let c = files
        .checksum(&t.p("share/abc"), |p| seen.push(p))
        .await
        .unwrap();
    assert_eq!(
        c.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(seen.last().map(Progress::percent), Some(100));
    let e = files.checksum(&t.p("share"), |_| {}).await.unwrap_err();
    assert!(matches!(e, FilesError::WrongType { .. }), "{e}");
    let e = files
        .checksum(&t.p("share/none"), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, FilesError::NotFound { .. }) && !e.is_retryable(),
        "{e}"
    );
    for p in [t.p("share"), t.p("copy/not-yet/x.bak")] {
        let free = files.free_space(&p).await.unwrap();
        assert!(free > 0 && free < 1 << 60, "implausible free space {free}");
    }
}

#[tokio::test]
async fn copy_round_trip_is_verified_and_repeatable() {
    let t = Tree::new();
    let files = t.files();
    let bytes = data(SIZE, 1);
    std::fs::write(t.root.join("share/mgc.bak"), &bytes).unwrap();
    let mut seen = Vec::new();
    let out = files
        .copy(
            &t.p("share/mgc.bak"),
            &t.p("copy/mgc.bak"),
            Some(sha(&bytes).to_uppercase()),
            |p| seen.push(p),
        )
        .await
        .unwrap();
    assert_eq!(out.sha256, sha(&bytes));
    assert_eq!((out.bytes_copied, out.resumed_from), (SIZE as u64, 0));
    assert!(!out.already_present);
    assert_eq!(std::fs::read(t.root.join("copy/mgc.bak")).unwrap(), bytes);
    assert!(!t.root.join("copy/mgc.bak.partial").exists());
    assert!(seen.len() >= 4 && seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(
        seen.last().map(|p| (p.done, p.total)),
        Some((SIZE as u64, SIZE as u64))
    );
    // Repeating the instruction is harmless: nothing is written.
    let again = files
        .copy(&t.p("share/mgc.bak"), &t.p("copy/mgc.bak"), None, |_| {})
        .await
        .unwrap();
    assert!(again.already_present && again.bytes_copied == 0 && again.sha256 == out.sha256);
    // A different file of the same name is never overwritten.
    std::fs::write(t.root.join("share/other.bak"), b"other").unwrap();
    let e = files
        .copy(&t.p("share/other.bak"), &t.p("copy/mgc.bak"), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, FilesError::DestinationExists { .. }) && !e.is_retryable(),
        "{e}"
    );
    assert_eq!(std::fs::read(t.root.join("copy/mgc.bak")).unwrap(), bytes);
    // Same file as source and destination; destination directory missing.
    let e = files
        .copy(&t.p("share/mgc.bak"), &t.p("share/mgc.bak"), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::InvalidArgument { .. }), "{e}");
    let e = files
        .copy(&t.p("share/mgc.bak"), &t.p("copy/no/dir.bak"), None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::NotFound { .. }), "{e}");
    assert!(!t.root.join("copy/no").exists());
}

#[tokio::test]
async fn concurrent_copies_to_one_destination_are_refused() {
    let t = Tree::new();
    let files = t.files();
    std::fs::write(t.root.join("share/a.bak"), b"a").unwrap();
    let dst = files.roots().resolve(&t.p("copy/a.bak")).await.unwrap();
    let claim = files.clone().claim(&dst).unwrap();
    let e = files
        .copy(&t.p("share/a.bak"), &t.p("copy/a.bak"), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, FilesError::Busy { .. }) && e.is_retryable(),
        "{e}"
    );
    drop(claim);
    files
        .copy(&t.p("share/a.bak"), &t.p("copy/a.bak"), None, |_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn interrupted_copy_resumes_and_matches() {
    let t = Tree::new();
    let bytes = data(SIZE, 2);
    std::fs::write(t.root.join("share/mgc.bak"), &bytes).unwrap();
    let half = (SIZE / 2) as u64;
    let e = t
        .files()
        .with_interrupt_after(half)
        .copy(&t.p("share/mgc.bak"), &t.p("copy/mgc.bak"), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, FilesError::Interrupted { copied, .. } if copied == half),
        "{e}"
    );
    assert!(e.is_retryable());
    assert!(!t.root.join("copy/mgc.bak").exists());
    let partial = t.root.join("copy/mgc.bak.partial");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), half);
    let mut first = None;
    let out = t
        .files()
        .copy(
            &t.p("share/mgc.bak"),
            &t.p("copy/mgc.bak"),
            Some(sha(&bytes)),
            |p| {
                first.get_or_insert(p);
            },
        )
        .await
        .unwrap();
    assert_eq!(out.resumed_from, half);
    assert_eq!(out.bytes_copied, SIZE as u64 - half);
    assert_eq!(
        first.map(|p| p.done),
        Some(half),
        "progress starts at the resume point"
    );
    assert_eq!(out.sha256, sha(&bytes));
    assert_eq!(std::fs::read(t.root.join("copy/mgc.bak")).unwrap(), bytes);
    assert!(!partial.exists());

    // A .partial left by hand (a third of the file) resumes too.
    std::fs::write(t.root.join("copy/b.bak.partial"), &bytes[..SIZE / 3]).unwrap();
    let out = t
        .files()
        .copy(&t.p("share/mgc.bak"), &t.p("copy/b.bak"), None, |_| {})
        .await
        .unwrap();
    assert_eq!(out.resumed_from, (SIZE / 3) as u64);
    assert_eq!(std::fs::read(t.root.join("copy/b.bak")).unwrap(), bytes);
}

#[tokio::test]
async fn mismatched_partial_restarts_from_zero() {
    let t = Tree::new();
    let files = t.files();
    let bytes = data(SIZE, 3);
    std::fs::write(t.root.join("share/mgc.bak"), &bytes).unwrap();
    let mut wrong = bytes[..SIZE / 2].to_vec();
    wrong[1000] ^= 0xff;
    for (name, partial) in [("a.bak", wrong), ("b.bak", data(SIZE + 10, 3))] {
        std::fs::write(t.root.join(format!("copy/{name}.partial")), partial).unwrap();
        let out = files
            .copy(
                &t.p("share/mgc.bak"),
                &t.p(&format!("copy/{name}")),
                None,
                |_| {},
            )
            .await
            .unwrap();
        assert_eq!(
            (out.resumed_from, out.bytes_copied),
            (0, SIZE as u64),
            "{name}"
        );
        assert_eq!(out.sha256, sha(&bytes));
        assert_eq!(
            std::fs::read(t.root.join(format!("copy/{name}"))).unwrap(),
            bytes
        );
    }
}

#[tokio::test]
async fn corrupted_source_is_refused_and_destination_not_created() {
    let t = Tree::new();
    let files = t.files();
    let mut bytes = data(SIZE, 4);
    let recorded = sha(&bytes);
    bytes[SIZE - 7] ^= 0x01; // one bit flipped after the checksum was recorded
    std::fs::write(t.root.join("share/mgc.bak"), &bytes).unwrap();
    let e = files
        .copy(
            &t.p("share/mgc.bak"),
            &t.p("copy/mgc.bak"),
            Some(recorded.clone()),
            |_| {},
        )
        .await
        .unwrap_err();
    match &e {
        FilesError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &recorded);
            assert_eq!(actual, &sha(&bytes));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(!e.is_retryable());
    assert!(!t.root.join("copy/mgc.bak").exists());
    assert!(!t.root.join("copy/mgc.bak.partial").exists());
    // Also when the mismatch is found on a resumed copy.
    std::fs::write(t.root.join("copy/mgc.bak.partial"), &bytes[..SIZE / 2]).unwrap();
    let e = files
        .copy(
            &t.p("share/mgc.bak"),
            &t.p("copy/mgc.bak"),
            Some(recorded),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::ChecksumMismatch { .. }), "{e}");
    assert!(!t.root.join("copy/mgc.bak").exists());
    let e = files
        .copy(
            &t.p("share/mgc.bak"),
            &t.p("copy/mgc.bak"),
            Some("xyz".into()),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::InvalidArgument { .. }), "{e}");
}

#[tokio::test]
async fn list_by_pattern_sorted_and_bounded() {
    let t = Tree::new();
    let share = t.root.join("share");
    for (name, len) in [
        ("mgc_3.trn", 3),
        ("mgc_1.trn", 1),
        ("mgc_2.bak", 2),
        ("MGC_4.trn", 4),
    ] {
        std::fs::write(share.join(name), vec![0u8; len]).unwrap();
    }
    std::fs::create_dir(share.join("mgc_dir.trn")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(t.outside.join("secret"), share.join("mgc_link.trn")).unwrap();
    let l = t.files().list(&t.p("share"), "mgc_*.trn").await.unwrap();
    let names: Vec<_> = l.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["mgc_1.trn", "mgc_3.trn", "mgc_dir.trn"]);
    assert_eq!(l.entries[1].size, 3);
    assert!(l.entries[2].is_dir && !l.entries[0].is_dir);
    assert!(l.entries[0].modified.is_some());
    assert_eq!(l.skipped, usize::from(cfg!(unix)));
    assert!(!l.truncated());
    let l = t
        .files()
        .with_max_list_entries(2)
        .list(&t.p("share"), "*")
        .await
        .unwrap();
    let names: Vec<_> = l.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["MGC_4.trn", "mgc_1.trn"]);
    assert!(l.truncated() && l.matched == 5);
    let e = t
        .files()
        .list(&t.p("share/mgc_1.trn"), "*")
        .await
        .unwrap_err();
    assert!(matches!(e, FilesError::WrongType { .. }), "{e}");
    let e = t.files().list(&t.p("share"), "../*").await.unwrap_err();
    assert!(matches!(e, FilesError::InvalidPattern { .. }), "{e}");
}

#[tokio::test]
async fn retention_keeps_newer_files_and_directories() {
    let t = Tree::new();
    let files = t.files();
    let dir = t.root.join("copy");
    let week = Duration::from_secs(7 * 24 * 3600);
    for name in ["old1.trn", "old2.trn", "new.trn", "old.bak"] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    for name in ["old1.trn", "old2.trn", "old.bak"] {
        set_age(&dir.join(name), week * 2);
    }
    std::fs::create_dir(dir.join("olddir.trn")).unwrap();
    set_age(&dir.join("olddir.trn"), week * 2);
    let out = files
        .delete_older_than(&t.p("copy"), "*.trn", week)
        .await
        .unwrap();
    assert_eq!(out.deleted, ["old1.trn", "old2.trn"]);
    assert_eq!((out.kept, out.directories, out.remaining), (1, 1, 0));
    for (name, present) in [
        ("old1.trn", false),
        ("old2.trn", false),
        ("new.trn", true),
        ("old.bak", true),
        ("olddir.trn", true),
    ] {
        assert_eq!(dir.join(name).exists(), present, "{name}");
    }
    // Repeating it deletes nothing more.
    let again = files
        .delete_older_than(&t.p("copy"), "*.trn", week)
        .await
        .unwrap();
    assert!(again.deleted.is_empty());
}

#[tokio::test]
async fn delete_files_only_and_idempotent() {
    let t = Tree::new();
    let files = t.files();
    std::fs::write(t.root.join("copy/a.trn"), b"x").unwrap();
    assert!(files.delete(&t.p("copy/a.trn")).await.unwrap());
    assert!(!files.delete(&t.p("copy/a.trn")).await.unwrap());
    let e = files.delete(&t.p("copy")).await.unwrap_err();
    assert!(
        matches!(e, FilesError::WrongType { .. }) && !e.is_retryable(),
        "{e}"
    );
    assert!(t.root.join("copy").is_dir());
}

/// `[files] copy_bytes_per_second`: 512 KiB at 128 KiB/s takes four seconds (of paused tokio
/// time: the sleeps are what is measured, not the disk), and a resumed copy paces only what
/// it still writes.
#[tokio::test(start_paused = true)]
async fn a_copy_keeps_to_its_rate_cap() {
    let t = Tree::new();
    std::fs::write(t.root.join("share/a.trn"), vec![7u8; 512 << 10]).unwrap();
    let files = t.files().with_copy_rate(128 << 10);
    let began = tokio::time::Instant::now();
    let c = files
        .copy(&t.p("share/a.trn"), &t.p("copy/a.trn"), None, |_| {})
        .await
        .unwrap();
    assert_eq!(c.bytes_copied, 512 << 10);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Half of a second file already in the .partial: two seconds for the rest.
    let data: Vec<u8> = (0..512u32 << 10).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.root.join("share/b.trn"), &data).unwrap();
    std::fs::write(t.root.join("copy/b.trn.partial"), &data[..256 << 10]).unwrap();
    let began = tokio::time::Instant::now();
    let c = files
        .copy(&t.p("share/b.trn"), &t.p("copy/b.trn"), None, |_| {})
        .await
        .unwrap();
    assert_eq!((c.resumed_from, c.bytes_copied), (256 << 10, 256 << 10));
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(std::fs::read(t.root.join("copy/b.trn")).unwrap(), data);
}
