//! The `files` backend: backup and log files under the roots configured in `agent.toml`
//! (`[files] roots`), reached only through [`FileRoots::resolve`]. Plain Rust types in and out;
//! the session maps them to the wire.
//!
//! Layout:
//! - [`path`] — syntax of network paths (POSIX, drive, UNC; what is refused and normalized).
//! - [`roots`] — the configured roots and the one resolution function (links, junctions).
//! - [`pattern`] — `*`/`?` name patterns.
//! - [`copy`] — streaming SHA-256 and the resumable, verified, atomically renamed copy.
//! - this file — [`Files`], the operations, and their result types.
//!
//! Every operation is safe to repeat: `stat`, `checksum`, `list` and `free_space` only read;
//! `copy` succeeds without writing when the destination already holds the source's bytes;
//! `delete` of an absent file succeeds and says so. Only regular files are ever written or
//! deleted; directories and links are never deleted, and `list` does not follow links.
//!
//! When you change an operation here, also touch: the proto messages and the session dispatch
//! (lead engineer), and `FilesError` in `error.rs` for a new failure.

pub mod copy;
pub mod path;
pub mod pattern;
pub mod roots;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use self::copy::{Checksum, CopyOutcome};
pub use self::pattern::NamePattern;
pub use self::roots::{FileRoots, Resolved};
use crate::error::FilesError;

/// Default bound on the entries one `list` or retention pass returns or handles.
pub const DEFAULT_MAX_LIST_ENTRIES: usize = 10_000;

/// Bytes done out of bytes total, reported by `copy` and `checksum` after each chunk (1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes processed so far.
    pub done: u64,
    /// Bytes to process in all.
    pub total: u64,
}

impl Progress {
    /// Whole percent, 100 for an empty file.
    pub fn percent(&self) -> u32 {
        if self.total == 0 {
            return 100;
        }
        u32::try_from(self.done.min(self.total).saturating_mul(100) / self.total).unwrap_or(100)
    }
}

/// What `stat` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// Whether the path exists; the other fields are zero/none when it does not.
    pub exists: bool,
    /// A directory (after following links inside the root).
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time, when the file system records one.
    pub modified: Option<SystemTime>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// File or directory name (not a path).
    pub name: String,
    /// A directory.
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time, when recorded.
    pub modified: Option<SystemTime>,
}

/// The result of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// Matching entries, sorted by name (byte order), at most the configured bound.
    pub entries: Vec<ListEntry>,
    /// How many entries matched in all.
    pub matched: usize,
    /// Entries skipped: links (never followed), special files, names that are not UTF-8.
    pub skipped: usize,
}

impl Listing {
    /// Whether matches were left out because of the bound (the first names are kept).
    pub fn truncated(&self) -> bool {
        self.matched > self.entries.len()
    }
}

/// The result of `delete_older_than`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention {
    /// Names of the files deleted, sorted.
    pub deleted: Vec<String>,
    /// Matching files kept because they are newer (or have no modification time).
    pub kept: usize,
    /// Matching directories, never deleted.
    pub directories: usize,
    /// Matches beyond the bound, not examined in this pass; call again.
    pub remaining: usize,
}

/// The `files` backend.
#[derive(Debug, Clone)]
pub struct Files {
    roots: FileRoots,
    max_list_entries: usize,
    /// Test hook: a copy stops (as if the agent died) once the `.partial` holds this many bytes.
    interrupt_after: Option<u64>,
    /// `[files] copy_bytes_per_second`: each copy's rate cap.
    copy_rate: Option<u64>,
    /// Destinations of copies in progress (shared by clones): a retried instruction (new op id,
    /// so the journal does not dedupe it) must not write the same `.partial` concurrently.
    copying: Arc<Mutex<HashSet<PathBuf>>>,
}

/// Marks a destination as being copied to, until dropped (also when the copy future is).
struct CopyClaim {
    set: Arc<Mutex<HashSet<PathBuf>>>,
    path: PathBuf,
}

impl Drop for CopyClaim {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.path);
    }
}

impl Files {
    /// The backend confined to `roots`.
    pub fn new(roots: FileRoots) -> Files {
        Files {
            roots,
            max_list_entries: DEFAULT_MAX_LIST_ENTRIES,
            interrupt_after: None,
            copy_rate: None,
            copying: Arc::default(),
        }
    }

    /// Claims `dst` for one copy; `Busy` if another copy to it is running in this agent.
    fn claim(&self, dst: &Resolved) -> Result<CopyClaim, FilesError> {
        let mut set = self.copying.lock().unwrap_or_else(PoisonError::into_inner);
        if !set.insert(dst.path.clone()) {
            return Err(FilesError::Busy {
                path: dst.input.clone(),
            });
        }
        Ok(CopyClaim {
            set: self.copying.clone(),
            path: dst.path.clone(),
        })
    }

    /// Bounds the entries one `list` returns and one retention pass handles (at least 1).
    #[must_use]
    pub fn with_max_list_entries(mut self, max: usize) -> Files {
        self.max_list_entries = max.max(1);
        self
    }

    /// Caps each copy at `bytes_per_second` (validated by the agent's config, at least 1).
    #[must_use]
    pub fn with_copy_rate(mut self, bytes_per_second: u64) -> Files {
        self.copy_rate = Some(bytes_per_second.max(1));
        self
    }

    /// Test hook: copies stop with [`FilesError::Interrupted`] after `bytes`.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_interrupt_after(mut self, bytes: u64) -> Files {
        self.interrupt_after = Some(bytes);
        self
    }

    /// The roots.
    pub fn roots(&self) -> &FileRoots {
        &self.roots
    }

    /// Whether `path` exists, its kind, size and modification time.
    pub async fn stat(&self, path: &str) -> Result<FileStat, FilesError> {
        let r = self.roots.resolve(path).await?;
        if !r.exists {
            return Ok(FileStat {
                exists: false,
                is_dir: false,
                size: 0,
                modified: None,
            });
        }
        let m = tokio::fs::metadata(&r.path)
            .await
            .map_err(|e| io_error("stat", path, e))?;
        Ok(FileStat {
            exists: true,
            is_dir: m.is_dir(),
            size: if m.is_dir() { 0 } else { m.len() },
            modified: m.modified().ok(),
        })
    }

    /// SHA-256 of a regular file, streamed; `progress` follows the bytes hashed.
    pub async fn checksum(
        &self,
        path: &str,
        progress: impl FnMut(Progress) + Send,
    ) -> Result<Checksum, FilesError> {
        let r = self.roots.resolve(path).await?;
        copy::checksum_resolved(&r, progress).await
    }

    /// Copies `src` to `dst` (both under the roots): streamed into `dst.partial`, resumed when
    /// a matching `.partial` exists, fsynced, verified by SHA-256 (against the source and
    /// `expected_sha256` if given) and renamed into place. See [`copy`] for the decisions.
    pub async fn copy(
        &self,
        src: &str,
        dst: &str,
        expected_sha256: Option<String>,
        progress: impl FnMut(Progress) + Send,
    ) -> Result<CopyOutcome, FilesError> {
        let src_r = self.roots.resolve(src).await?;
        let dst_r = self.roots.resolve(dst).await?;
        let partial_wire = dst_r
            .wire
            .with_name_suffix(copy::PARTIAL_SUFFIX)
            .ok_or_else(|| FilesError::InvalidPath {
                path: dst.to_string(),
                reason: format!("no room for the '{}' suffix", copy::PARTIAL_SUFFIX),
            })?;
        let partial_input = format!("{dst}{}", copy::PARTIAL_SUFFIX);
        let partial_r = self
            .roots
            .resolve_wire(&partial_input, partial_wire)
            .await?;
        if src_r.path == dst_r.path || src_r.path == partial_r.path {
            return Err(FilesError::InvalidArgument {
                path: dst.to_string(),
                what: "destination",
                reason: format!("it is the source '{src}' itself"),
            });
        }
        if partial_r.is_link {
            return Err(FilesError::WrongType {
                path: partial_input,
                expected: "a regular file (a link is never used as a partial copy)",
            });
        }
        let _claim = self.claim(&dst_r)?;
        self.copy_resolved(
            &src_r,
            &dst_r,
            &partial_r,
            expected_sha256.as_deref(),
            progress,
        )
        .await
    }

    /// Entries of `dir` whose names match `pattern`, sorted by name, at most the bound; not
    /// recursive, links not followed.
    pub async fn list(&self, dir: &str, pattern: &str) -> Result<Listing, FilesError> {
        let pattern = NamePattern::parse(pattern)?;
        let r = self.roots.resolve(dir).await?;
        self.scan(&r, &pattern).await
    }

    /// Deletes the regular file `path`. `Ok(false)` when it was already absent (a repeated
    /// retention step is harmless); directories and links are refused.
    pub async fn delete(&self, path: &str) -> Result<bool, FilesError> {
        let r = self.roots.resolve(path).await?;
        if !r.exists {
            return Ok(false);
        }
        if r.is_link {
            return Err(FilesError::WrongType {
                path: path.to_string(),
                expected: "a regular file (links are not deleted)",
            });
        }
        let m = tokio::fs::symlink_metadata(&r.path)
            .await
            .map_err(|e| io_error("stat", path, e))?;
        if !m.is_file() {
            return Err(FilesError::WrongType {
                path: path.to_string(),
                expected: "a regular file (directories are never deleted)",
            });
        }
        match tokio::fs::remove_file(&r.path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("delete", path, e)),
        }
    }

    /// Retention: deletes the regular files of `dir` matching `pattern` whose modification time
    /// is at least `age` ago. Directories and links are never deleted; files without a
    /// modification time are kept. Handles at most the bound per call (`remaining` says more).
    pub async fn delete_older_than(
        &self,
        dir: &str,
        pattern: &str,
        age: Duration,
    ) -> Result<Retention, FilesError> {
        let pattern = NamePattern::parse(pattern)?;
        let r = self.roots.resolve(dir).await?;
        let listing = self.scan(&r, &pattern).await?;
        let cutoff = SystemTime::now().checked_sub(age);
        let mut out = Retention {
            remaining: listing.matched - listing.entries.len(),
            ..Retention::default()
        };
        for entry in listing.entries {
            if entry.is_dir {
                out.directories += 1;
                continue;
            }
            let old = matches!((entry.modified, cutoff), (Some(m), Some(c)) if m <= c);
            if !old {
                out.kept += 1;
                continue;
            }
            let path = r.path.join(&entry.name);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => out.deleted.push(entry.name),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let shown = format!("{}/{}", dir.trim_end_matches(['/', '\\']), entry.name);
                    return Err(io_error("delete", &shown, e));
                }
            }
        }
        Ok(out)
    }

    /// Bytes available to the agent on the volume holding `path` (or, if it does not exist
    /// yet, its nearest existing ancestor under the root).
    pub async fn free_space(&self, path: &str) -> Result<u64, FilesError> {
        let r = self.roots.resolve(path).await?;
        let at = r.existing.clone();
        tokio::task::spawn_blocking(move || fs4::available_space(&at))
            .await
            .map_err(|e| io_error("free space of", path, io::Error::other(e)))?
            .map_err(|e| io_error("free space of", path, e))
    }

    /// Reads `r` (a directory) and keeps the first matches by name.
    async fn scan(&self, r: &Resolved, pattern: &NamePattern) -> Result<Listing, FilesError> {
        if !r.exists {
            return Err(FilesError::NotFound {
                path: r.input.clone(),
            });
        }
        let mut rd = tokio::fs::read_dir(&r.path).await.map_err(|e| {
            if e.kind() == io::ErrorKind::NotADirectory {
                FilesError::WrongType {
                    path: r.input.clone(),
                    expected: "a directory",
                }
            } else {
                io_error("list", &r.input, e)
            }
        })?;
        let mut kept: BTreeMap<String, bool> = BTreeMap::new();
        let mut listing = Listing::default();
        while let Some(entry) = rd
            .next_entry()
            .await
            .map_err(|e| io_error("list", &r.input, e))?
        {
            let Ok(name) = entry.file_name().into_string() else {
                listing.skipped += 1;
                continue;
            };
            if !pattern.matches(&name) {
                continue;
            }
            let ft = entry
                .file_type()
                .await
                .map_err(|e| io_error("list", &r.input, e))?;
            if !(ft.is_file() || ft.is_dir()) {
                listing.skipped += 1;
                continue;
            }
            listing.matched += 1;
            kept.insert(name, ft.is_dir());
            if kept.len() > self.max_list_entries {
                kept.pop_last();
            }
        }
        for (name, is_dir) in kept {
            let m = match tokio::fs::symlink_metadata(r.path.join(&name)).await {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    listing.matched -= 1; // vanished since read_dir
                    continue;
                }
                Err(e) => return Err(io_error("list", &r.input, e)),
            };
            listing.entries.push(ListEntry {
                name,
                is_dir,
                size: if is_dir { 0 } else { m.len() },
                modified: m.modified().ok(),
            });
        }
        Ok(listing)
    }
}

fn io_error(op: &'static str, path: &str, source: io::Error) -> FilesError {
    if source.kind() == io::ErrorKind::NotFound {
        FilesError::NotFound {
            path: path.to_string(),
        }
    } else {
        FilesError::Io {
            op,
            path: path.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
