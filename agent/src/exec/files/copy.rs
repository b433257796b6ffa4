//! Streaming SHA-256 and the verified, resumable copy.
//!
//! A copy writes `DST.partial` next to the destination, fsyncs it, re-reads it and checks its
//! SHA-256 against the source's (and against the caller's expected value), and only then renames
//! it into place, so `DST` either does not exist or is complete and verified. A copy that stops
//! (agent crash, cancelled future, lost share) leaves the `.partial`; the next copy hashes the
//! `.partial` and the same-length prefix of the source and continues after it when they agree,
//! or starts over when they do not.
//!
//! Decisions:
//! - An existing `DST` is never overwritten. If it already holds the source's bytes the copy
//!   succeeds without writing (`already_present`), so a repeated instruction is harmless; if it
//!   holds anything else the copy fails with [`FilesError::DestinationExists`].
//! - The destination's directory must exist; directories are not created.
//! - A source whose size or modification time changes during the copy is reported as
//!   [`FilesError::SourceChanged`] (retryable: a log backup still being written settles).
//! - A source whose SHA-256 differs from `expected_sha256` is [`FilesError::ChecksumMismatch`];
//!   the `.partial` is removed and `DST` is not created.
//! - Cancellation is by dropping the future; the `.partial` stays for the next attempt.
//! - Two copies to one destination at once are refused ([`FilesError::Busy`], retryable): a
//!   retried instruction carries a new op id, so only this check keeps it off the `.partial`.
//! - Verifying a `.partial` before resuming reads it and the source's prefix without reporting
//!   progress; progress then starts at the resume point.
//! - `[files] copy_bytes_per_second` paces the copy loop (reading the source, writing the
//!   `.partial`); hashing a `.partial` and the source's prefix before a resume, and re-reading
//!   what landed, are not paced.

use std::io::{self, SeekFrom};
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Files, Progress, Resolved};
use crate::error::FilesError;

/// Read and write unit.
const CHUNK: usize = 1 << 20;
/// Suffix of the file a copy writes before the final rename.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The result of a successful [`Files::copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    /// Bytes written by this call (0 when the destination was already present).
    pub bytes_copied: u64,
    /// Length of the verified `.partial` this call continued from (0 = from the start).
    pub resumed_from: u64,
    /// Size of the file now at the destination.
    pub size: u64,
    /// SHA-256 (lower-case hex) of the source, the written file and the destination.
    pub sha256: String,
    /// The destination already held exactly the source's bytes; nothing was written.
    pub already_present: bool,
}

/// The result of [`Files::checksum`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Bytes hashed.
    pub size: u64,
}

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Normalizes a caller's expected SHA-256: 64 hex digits, any case.
fn parse_expected(path: &str, expected: &str) -> Result<String, FilesError> {
    let e = expected.trim();
    if e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FilesError::InvalidArgument {
            path: path.to_string(),
            what: "expected_sha256",
            reason: "must be 64 hexadecimal digits".into(),
        });
    }
    Ok(e.to_ascii_lowercase())
}

/// Size and modification time, to notice a source that changes while it is read.
fn fingerprint(m: &std::fs::Metadata) -> (u64, Option<SystemTime>) {
    (m.len(), m.modified().ok())
}

/// Feeds up to `len` bytes of `file` (from its current position) to `hasher`; returns how many
/// bytes were read (less than `len` only at end of file). `on_chunk` gets the running count.
async fn hash_stream(
    file: &mut tokio::fs::File,
    len: u64,
    hasher: &mut Sha256,
    buf: &mut [u8],
    mut on_chunk: impl FnMut(u64),
) -> io::Result<u64> {
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done).map_or(buf.len(), |r| r.min(buf.len()));
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        on_chunk(done);
    }
    Ok(done)
}

/// Opens `r` for reading as a regular file.
async fn open_regular(r: &Resolved) -> Result<(tokio::fs::File, std::fs::Metadata), FilesError> {
    let io_err = |op, source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            FilesError::NotFound {
                path: r.input.clone(),
            }
        } else {
            FilesError::Io {
                op,
                path: r.input.clone(),
                source,
            }
        }
    };
    if !r.exists {
        return Err(FilesError::NotFound {
            path: r.input.clone(),
        });
    }
    let file = tokio::fs::File::open(&r.path)
        .await
        .map_err(|e| io_err("open", e))?;
    let meta = file.metadata().await.map_err(|e| io_err("stat", e))?;
    if !meta.is_file() {
        return Err(FilesError::WrongType {
            path: r.input.clone(),
            expected: "a regular file",
        });
    }
    Ok((file, meta))
}

/// Hashes a whole file, reporting progress; fails if the file changes while it is read.
pub(super) async fn checksum_resolved(
    r: &Resolved,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Checksum, FilesError> {
    let (mut file, before) = open_regular(r).await?;
    let total = before.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    progress(Progress { done: 0, total });
    let size = hash_stream(&mut file, u64::MAX, &mut hasher, &mut buf, |done| {
        progress(Progress { done, total })
    })
    .await
    .map_err(|source| FilesError::Io {
        op: "read",
        path: r.input.clone(),
        source,
    })?;
    check_unchanged(r, &file, &before, size).await?;
    Ok(Checksum {
        sha256: hex(&hasher.finalize()),
        size,
    })
}

/// Fails with `SourceChanged` if `file` no longer has the size and time it had in `before`, or
/// if `read` bytes were read instead of its size.
async fn check_unchanged(
    r: &Resolved,
    file: &tokio::fs::File,
    before: &std::fs::Metadata,
    read: u64,
) -> Result<(), FilesError> {
    let after = file.metadata().await.map_err(|source| FilesError::Io {
        op: "stat",
        path: r.input.clone(),
        source,
    })?;
    let changed = |what: String| FilesError::SourceChanged {
        path: r.input.clone(),
        what,
    };
    if fingerprint(before) != fingerprint(&after) {
        return Err(changed(format!(
            "size {} -> {} bytes or modification time moved",
            before.len(),
            after.len()
        )));
    }
    if read != before.len() {
        return Err(changed(format!("read {read} bytes of {}", before.len())));
    }
    Ok(())
}

impl Files {
    /// The copy itself; see the module doc. `dst` and its `.partial` are already resolved.
    pub(super) async fn copy_resolved(
        &self,
        src: &Resolved,
        dst: &Resolved,
        partial: &Resolved,
        expected: Option<&str>,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<CopyOutcome, FilesError> {
        let expected = expected
            .map(|e| parse_expected(&src.input, e))
            .transpose()?;
        let (mut source, before) = open_regular(src).await?;
        let total = before.len();
        let io = |op, path: &Resolved| {
            let path = path.input.clone();
            move |source| FilesError::Io { op, path, source }
        };
        if dst.exists {
            return self.existing_destination(src, dst, expected).await;
        }
        match dst.path.parent() {
            Some(dir) if tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) => {}
            _ => {
                return Err(FilesError::NotFound {
                    path: format!("{} (its directory)", dst.input),
                });
            }
        }
        // Resume: keep the .partial only if it is a prefix of the source, byte for byte.
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut start = 0u64;
        if partial.exists {
            let (mut part, pmeta) = open_regular(partial).await?;
            let plen = pmeta.len();
            if plen <= total && plen > 0 {
                let mut part_hasher = Sha256::new();
                let got = hash_stream(&mut part, plen, &mut part_hasher, &mut buf, |_| {})
                    .await
                    .map_err(io("read", partial))?;
                // The source's prefix goes into the copy's own hasher, which then continues.
                let sgot = hash_stream(&mut source, plen, &mut hasher, &mut buf, |_| {})
                    .await
                    .map_err(io("read", src))?;
                if got == plen
                    && sgot == plen
                    && part_hasher.finalize() == hasher.clone().finalize()
                {
                    start = plen;
                }
            }
            if start == 0 {
                tracing::info!(partial = %partial.input, "partial copy does not match the source; starting over");
                hasher = Sha256::new();
                source
                    .seek(SeekFrom::Start(0))
                    .await
                    .map_err(io("seek", src))?;
            }
        }
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(start == 0)
            .open(&partial.path)
            .await
            .map_err(io("create", partial))?;
        out.seek(SeekFrom::Start(start))
            .await
            .map_err(io("seek", partial))?;
        progress(Progress { done: start, total });
        let mut done = start;
        let began = tokio::time::Instant::now();
        loop {
            let mut want = buf.len();
            if let Some(rate) = self.copy_rate {
                // Quarter-second chunks, so the rate holds over short files too.
                want = want.min(usize::try_from((rate / 4).max(4096)).unwrap_or(usize::MAX));
            }
            if let Some(limit) = self.interrupt_after {
                if done >= limit && done < total {
                    out.sync_all().await.map_err(io("fsync", partial))?;
                    return Err(FilesError::Interrupted {
                        path: dst.input.clone(),
                        copied: done,
                    });
                }
                want = want.min(usize::try_from(limit - done).unwrap_or(usize::MAX));
            }
            let n = source
                .read(&mut buf[..want])
                .await
                .map_err(io("read", src))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .await
                .map_err(io("write", partial))?;
            hasher.update(&buf[..n]);
            done += n as u64;
            if done > total {
                break; // grew while we read: check_unchanged reports it
            }
            progress(Progress { done, total });
            if let Some(rate) = self.copy_rate {
                let due =
                    began + std::time::Duration::from_secs_f64((done - start) as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
        }
        out.flush().await.map_err(io("flush", partial))?;
        out.sync_all().await.map_err(io("fsync", partial))?;
        drop(out);
        check_unchanged(src, &source, &before, done).await?;
        let sha256 = hex(&hasher.finalize());
        if let Some(expected) = expected
            && expected != sha256
        {
            remove_quietly(&partial.path).await;
            return Err(FilesError::ChecksumMismatch {
                path: src.input.clone(),
                expected,
                actual: sha256,
            });
        }
        // Re-read what landed on disk (the .partial was resolved before it existed).
        let landed = Resolved {
            exists: true,
            ..partial.clone()
        };
        let written = checksum_resolved(&landed, |_| {}).await?;
        if written.sha256 != sha256 {
            remove_quietly(&partial.path).await;
            return Err(FilesError::VerifyFailed {
                path: dst.input.clone(),
                source_sha256: sha256,
                written: written.sha256,
            });
        }
        if tokio::fs::symlink_metadata(&dst.path).await.is_ok() {
            // Appeared while we copied: do not replace it; the next call compares contents.
            return Err(FilesError::SourceChanged {
                path: dst.input.clone(),
                what: "the destination appeared during the copy".into(),
            });
        }
        tokio::fs::rename(&partial.path, &dst.path)
            .await
            .map_err(io("rename into place", dst))?;
        sync_parent(&dst.path).await;
        Ok(CopyOutcome {
            bytes_copied: done - start,
            resumed_from: start,
            size: done,
            sha256,
            already_present: false,
        })
    }

    /// `dst` exists: success if it already holds the source's bytes, otherwise a refusal.
    async fn existing_destination(
        &self,
        src: &Resolved,
        dst: &Resolved,
        expected: Option<String>,
    ) -> Result<CopyOutcome, FilesError> {
        let source = checksum_resolved(src, |_| {}).await?;
        if let Some(expected) = expected
            && expected != source.sha256
        {
            return Err(FilesError::ChecksumMismatch {
                path: src.input.clone(),
                expected,
                actual: source.sha256,
            });
        }
        let existing = checksum_resolved(dst, |_| {}).await?;
        if existing.sha256 != source.sha256 {
            return Err(FilesError::DestinationExists {
                path: dst.input.clone(),
                existing: existing.sha256,
                source_sha256: source.sha256,
            });
        }
        Ok(CopyOutcome {
            bytes_copied: 0,
            resumed_from: 0,
            size: existing.size,
            sha256: existing.sha256,
            already_present: true,
        })
    }
}

/// Removes a file whose content must not be used; a failure only leaves a `.partial` that the
/// next copy checks again, so it is logged, not returned.
async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "failed to remove a rejected partial copy: {e}");
    }
}

/// Makes a rename durable: fsync the directory (unix). Windows cannot open a directory this
/// way and NTFS journals the rename itself.
async fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent()
        && let Ok(d) = tokio::fs::File::open(dir).await
    {
        let _ = d.sync_all().await;
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_expected() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        let e = "A".repeat(64);
        assert_eq!(parse_expected("/x", &e).unwrap(), "a".repeat(64));
        assert!(parse_expected("/x", "abc").is_err());
        assert!(parse_expected("/x", &"g".repeat(64)).is_err());
    }
}
