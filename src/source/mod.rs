//! Sources: layout detection and consistent snapshots.
//!
//! A snapshot resolves the layout's symlink once and reads every file through
//! that one resolved directory. When the link moves while we read (a ConfigMap
//! or git-sync swap), the snapshot is taken again, so it always holds exactly
//! one revision.

mod cache;
mod layout;
mod read;
#[cfg(test)]
pub(crate) mod tests;

use crate::config::{LayoutKind, SourceConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use cache::ReadCache;
use cache::*;
use layout::*;
pub use layout::{resolve, swapping_link_advice};
pub use read::Delta;
use read::*;

/// How often a snapshot is retried when the link keeps moving under it.
const SWAP_RETRIES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Plain,
    Configmap,
    GitSync,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Plain => "plain",
            Layout::Configmap => "configmap",
            Layout::GitSync => "git-sync",
        })
    }
}

/// Where a source's files are read from, once detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub layout: Layout,
    /// The directory that holds the layout (for git-sync, the git-sync root).
    pub root: PathBuf,
    /// The symlink that the layout swaps (`..data`, or the git-sync link).
    pub link: Option<PathBuf>,
    /// What `link` pointed to when resolved (the revision).
    pub revision: Option<PathBuf>,
    /// The directory files are read from: `root/revision[/subdir]`, or the root.
    pub dir: PathBuf,
    /// How files are named to the operator: `root/..` path as the tool shows it.
    pub display_dir: PathBuf,
    /// Where files are read from: `dir` as opened beneath the root, one
    /// real directory at a time (`/proc/self/fd/N`), so that a revision or
    /// subdirectory that is, or becomes, a symlink out of the source is
    /// never read through.
    pub read_dir: PathBuf,
    /// Keeps `read_dir` open while this is alive.
    pub held: HeldDir,
}

/// An open directory that `Resolved::read_dir` names.
#[derive(Debug, Clone, Default)]
pub struct HeldDir(pub Option<std::sync::Arc<std::os::fd::OwnedFd>>);

impl PartialEq for HeldDir {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeldDir {}

/// A source that holds no usable directory right now. Never read as empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    /// The file as the operator names it (source path joined with the key).
    pub path: Arc<Path>,
    /// Shared with the read cache.
    pub content: Arc<str>,
    pub sha256: crate::sha::Sha,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
    /// The file's text, lossily decoded, when it was read but refused for
    /// its encoding (not UTF-8, a NUL byte): the names it may define are
    /// read from it, so that it still protects them.
    #[serde(skip)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSnapshot {
    /// The configured source path.
    pub source: PathBuf,
    pub layout: Layout,
    pub revision: Option<PathBuf>,
    pub files: Vec<SourceFile>,
    pub refused: Vec<Refusal>,
    /// The newest change time (ctime, since the epoch) seen on the directory,
    /// the layout's link and root, and the files read: how long the source
    /// has stood still, as the file system tells it.
    #[serde(skip)]
    pub newest_change: Duration,
    /// `armord.manifest` and `armord.manifest.sig`, when present: their text,
    /// or why they could not be read (a symlink that leaves the source…).
    /// Never profiles.
    #[serde(skip)]
    pub manifest: Option<Result<String, String>>,
    #[serde(skip)]
    pub signature: Option<Result<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotResult {
    Ok(SourceSnapshot),
    Unavailable(Unavailable),
}

pub use crate::config::Limits;

/// A signed revision's manifest and its signature: read beside the
/// profiles, never profiles themselves (see `signing`).
pub const MANIFEST: &str = "armord.manifest";
pub const SIGNATURE: &str = "armord.manifest.sig";

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in &digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Names that are never profiles: dotfiles (which covers `..data`, the
/// timestamped ConfigMap directories, `.git`, `.#lock` files), editor and
/// package-manager leftovers, and documentation.
pub fn skipped_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || name.ends_with(".swp")
        || name.contains(".dpkg-")
        || name.contains(".rpmnew")
        || name.contains(".rpmsave")
        || name.contains(".rpmorig")
        || name.ends_with(".md")
        || name == "README"
        || name == "LICENSE"
}

fn unavailable(path: &Path, reason: impl Into<String>) -> Unavailable {
    Unavailable {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "does not exist".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Read one file with a source's rules (size, encoding, NUL bytes), for
/// offline validation. The file's own directory is its root.
pub fn read_one(path: &Path, limits: &Limits) -> Result<SourceFile, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("file name is not UTF-8")?;
    let root_canon = fs::canonicalize(dir).map_err(|e| io_reason(&e))?;
    match read_entry(dir, &root_canon, name, path.to_owned(), limits, None, false) {
        Read1::File(f) => Ok(f),
        Read1::Refused(r) | Read1::Undecodable(r, _) => Err(r),
        Read1::Skip => Err("is a directory".into()),
        Read1::Vanished => Err("does not exist".into()),
    }
}

/// Take a snapshot of one source: one revision, never a mix.
pub fn snapshot(cfg: &SourceConfig, limits: &Limits) -> SnapshotResult {
    snapshot_cached(cfg, limits, &mut ReadCache::default())
}

/// [`snapshot`], reading only the files that changed since `cache` was filled.
pub fn snapshot_cached(cfg: &SourceConfig, limits: &Limits, cache: &mut ReadCache) -> SnapshotResult {
    snapshot_named(cfg, limits, cache, None)
}

/// [`snapshot_cached`], told which paths inotify reported since the last
/// read (`named`; `None`: unknown). For a plain directory whose last read
/// the cache holds, only the reported names of that directory are looked
/// at again. A reported path elsewhere under the source (the directory
/// itself, a parent, a subdirectory) makes it a full read.
pub fn snapshot_named(
    cfg: &SourceConfig,
    limits: &Limits,
    cache: &mut ReadCache,
    named: Option<&BTreeSet<PathBuf>>,
) -> SnapshotResult {
    for _ in 0..SWAP_RETRIES {
        let r = match resolve(cfg) {
            Ok(r) => r,
            Err(u) => return SnapshotResult::Unavailable(u),
        };
        let names = named.and_then(|n| names_in(&r.dir, &cfg.path, n));
        let snap = match read_dir_once(cfg, &r, limits, cache, names.as_ref()) {
            Ok(s) => s,
            Err(u) => return SnapshotResult::Unavailable(u),
        };
        // Re-check the link: if it moved, what we read may be the old revision
        // mixed with nothing, or a revision being deleted. Take it again.
        if let Some(link) = &r.link {
            let now = fs::read_link(link)
                .ok()
                .map(|t| normalize(&link_target_rel(link, &t, &r.root)));
            if now.as_ref() != r.revision.as_ref() {
                continue;
            }
        }
        match snap {
            Some(s) => return SnapshotResult::Ok(s),
            None => continue,
        }
    }
    SnapshotResult::Unavailable(unavailable(&cfg.path, "kept changing while it was read; will retry"))
}

/// What changed in a plain source since `cache` was filled by a complete
/// read, told the paths inotify reported since (`named`): only those
/// entries, and the ones a read by name never takes on trust, are looked
/// at again. `None` when that cannot be told safely (the source is not a
/// plain directory now, a reported path is not a plain entry of it, the
/// cache holds no complete read of it, or it cannot be resolved): read it
/// in full then.
pub fn snapshot_delta(
    cfg: &SourceConfig,
    limits: &Limits,
    cache: &mut ReadCache,
    named: &BTreeSet<PathBuf>,
) -> Option<Delta> {
    cache.listing.as_ref()?;
    let r = resolve(cfg).ok()?;
    let names = names_in(&r.dir, &cfg.path, named)?;
    read_delta(&r, limits, cache, &names)
}

/// Whether a path inotify reported concerns the source at `source`: a path
/// inside it, or the source itself or one of its ancestors.
pub fn concerns(source: &Path, reported: &Path) -> bool {
    reported.starts_with(source) || source.starts_with(reported)
}

/// The names in `dir` among `named`; `None` when a reported path under the
/// source is not a plain entry of `dir` (or its name is not UTF-8).
fn names_in(dir: &Path, source: &Path, named: &BTreeSet<PathBuf>) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for p in named {
        if p.parent() == Some(dir) {
            out.insert(p.file_name()?.to_str()?.to_owned());
        } else if concerns(source, p) || p.starts_with(dir) {
            return None;
        }
    }
    Some(out)
}

/// The revision a link target names, relative to the root (as `resolve` stores it).
fn link_target_rel(link: &Path, target: &Path, root: &Path) -> PathBuf {
    let abs = match link.parent() {
        Some(parent) if target.is_relative() => parent.join(target),
        _ => target.to_owned(),
    };
    let abs = normalize(&abs);
    match abs.strip_prefix(root) {
        Ok(rel) => rel.to_owned(),
        Err(_) => abs,
    }
}
