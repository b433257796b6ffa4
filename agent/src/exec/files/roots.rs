//! The configured file roots and the ONE function, [`FileRoots::resolve`], through which every
//! path from the network reaches the disk.
//!
//! Resolution, in order: parse the string ([`WirePath::parse`]: syntax, `..`, control
//! characters, lengths, Windows forms), check it is lexically under a configured root, then walk
//! the disk: find the deepest part of the path that exists (by `symlink_metadata`, so a dangling
//! link counts as existing), canonicalize it, and require the result to stay under the
//! canonicalized root. A link or junction that leads out of the root is refused, as is a dangling
//! link (creating through it would create its target). Components that do not exist yet are
//! plain names appended to the canonical prefix, so they cannot be links.
//!
//! Not covered: a local administrator who swaps a directory for a link between resolution and
//! use (time-of-check/time-of-use). The roots are directories only administrators write; the
//! check defends against paths from the network, not against the host's own administrators.
//!
//! Roots are not required to exist when the agent starts (a share in the lost data center may
//! be unreachable for hours); a root that cannot be canonicalized when used is a retryable
//! [`FilesError::RootUnavailable`].

use std::io;
use std::path::PathBuf;

use super::path::WirePath;
use crate::error::FilesError;

/// The roots every file operation is confined to.
#[derive(Debug, Clone, Default)]
pub struct FileRoots {
    roots: Vec<Root>,
}

#[derive(Debug, Clone)]
struct Root {
    /// As parsed from the configuration.
    wire: WirePath,
    /// As this host spells it (not canonicalized: that happens at each use).
    host: PathBuf,
}

/// A path that passed [`FileRoots::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The string received, for messages.
    pub input: String,
    /// The parsed path.
    pub wire: WirePath,
    /// The host path to operate on: the canonical existing prefix plus the missing names.
    pub path: PathBuf,
    /// Whether the whole path exists (as a file, directory or other entry).
    pub exists: bool,
    /// The path's last name is itself a link (or junction) that was followed.
    pub is_link: bool,
    /// The deepest existing ancestor-or-self, canonicalized (for `free_space` of a path that
    /// does not exist yet).
    pub existing: PathBuf,
}

/// Checks one configured root: absolute (any form, so a Windows example validates on Linux),
/// no `..`, and a directory rather than a whole volume (`/`, `D:\`). UNC shares may be roots.
pub fn validate_root(root: &str) -> Result<WirePath, String> {
    let wire = WirePath::parse(root)?;
    if wire.components().is_empty() && !matches!(wire.form(), super::path::PathForm::Unc { .. }) {
        return Err("a whole volume cannot be a root; name a directory".into());
    }
    Ok(wire)
}

impl FileRoots {
    /// Builds the roots from configured strings. Each must pass [`validate_root`] and be a form
    /// this host can open (POSIX on unix, drive or UNC on Windows).
    pub fn new<S: AsRef<str>>(roots: &[S]) -> Result<FileRoots, FilesError> {
        let roots = roots
            .iter()
            .map(|r| {
                let r = r.as_ref();
                let invalid = |reason: String| FilesError::InvalidRoot {
                    root: r.to_string(),
                    reason,
                };
                let wire = validate_root(r).map_err(invalid)?;
                let host = wire.to_host_path().map_err(invalid)?;
                Ok(Root { wire, host })
            })
            .collect::<Result<_, FilesError>>()?;
        Ok(FileRoots { roots })
    }

    /// The roots, normalized, for messages and `inspect`.
    pub fn list(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.wire.to_string()).collect()
    }

    /// Resolves a path from the network; see the module doc. Nothing is created.
    pub async fn resolve(&self, input: &str) -> Result<Resolved, FilesError> {
        let wire = WirePath::parse(input).map_err(|reason| FilesError::InvalidPath {
            path: input.to_string(),
            reason,
        })?;
        self.resolve_wire(input, wire).await
    }

    /// Resolves an already parsed path; `input` names it in messages.
    pub async fn resolve_wire(&self, input: &str, wire: WirePath) -> Result<Resolved, FilesError> {
        let root = self
            .roots
            .iter()
            .find(|r| wire.starts_with(&r.wire))
            .ok_or_else(|| FilesError::OutsideRoots {
                path: input.to_string(),
                roots: if self.roots.is_empty() {
                    "none configured".into()
                } else {
                    self.list().join(", ")
                },
            })?;
        let canonical_root = tokio::fs::canonicalize(&root.host)
            .await
            .map_err(|source| FilesError::RootUnavailable {
                root: root.wire.to_string(),
                source,
            })?;
        let below = &wire.components()[root.wire.components().len()..];
        // Walk down while entries exist; `symlink_metadata` does not follow links, so a dangling
        // link is found as existing and then refused by canonicalize below.
        let mut existing = root.host.clone();
        let mut found = 0;
        let mut last_is_link = false;
        for name in below {
            let next = existing.join(name);
            match tokio::fs::symlink_metadata(&next).await {
                Ok(m) => {
                    existing = next;
                    found += 1;
                    last_is_link = m.file_type().is_symlink();
                }
                Err(e) if is_absent(&e) => break,
                Err(source) => {
                    return Err(FilesError::Io {
                        op: "inspect",
                        path: input.to_string(),
                        source,
                    });
                }
            }
        }
        let canonical = match tokio::fs::canonicalize(&existing).await {
            Ok(c) => c,
            Err(e) if is_absent(&e) => {
                return Err(FilesError::SymlinkEscape {
                    path: input.to_string(),
                    root: root.wire.to_string(),
                    reason: "a symbolic link on the way points to nothing".into(),
                });
            }
            Err(source) => {
                return Err(FilesError::Io {
                    op: "canonicalize",
                    path: input.to_string(),
                    source,
                });
            }
        };
        if !canonical.starts_with(&canonical_root) {
            return Err(FilesError::SymlinkEscape {
                path: input.to_string(),
                root: root.wire.to_string(),
                reason: "a symbolic link or junction on the way leads outside the root".into(),
            });
        }
        let mut path = canonical.clone();
        path.extend(&below[found..]);
        Ok(Resolved {
            input: input.to_string(),
            exists: found == below.len(),
            is_link: found == below.len() && last_is_link,
            wire,
            path,
            existing: canonical,
        })
    }
}

/// Absent, or a prefix is a file (`ENOTDIR`): either way the rest does not exist.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
