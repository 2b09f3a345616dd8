//! Sources: layout detection and consistent snapshots.
//!
//! A snapshot resolves the layout's symlink once and reads every file through
//! that one resolved directory. When the link moves while we read (a ConfigMap
//! or git-sync swap), the snapshot is taken again, so it always holds exactly
//! one revision.

use crate::config::{LayoutKind, SourceConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

/// A source that holds no usable directory right now. Never read as empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    /// The file as the operator names it (source path joined with the key).
    pub path: PathBuf,
    pub content: String,
    pub sha256: String,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotResult {
    Ok(SourceSnapshot),
    Unavailable(Unavailable),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_files: usize,
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
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

/// Read a symlink and return its target joined onto the link's directory.
fn link_target(link: &Path) -> std::io::Result<PathBuf> {
    let target = fs::read_link(link)?;
    Ok(match link.parent() {
        Some(parent) if target.is_relative() => parent.join(target),
        _ => target,
    })
}

/// Is `target` (a link target) inside `dir/.worktrees/`, as git-sync writes it?
fn worktree_of(root: &Path, target: &Path) -> Option<PathBuf> {
    let rel = target.strip_prefix(root).ok()?;
    let mut comps = rel.components();
    match (comps.next(), comps.next(), comps.next()) {
        (Some(Component::Normal(w)), Some(Component::Normal(_)), None) if w == ".worktrees" => Some(rel.to_owned()),
        _ => None,
    }
}

fn find_git_sync_link(root: &Path, wanted: Option<&str>) -> std::io::Result<Option<(PathBuf, PathBuf)>> {
    if let Some(name) = wanted {
        let link = root.join(name);
        return match link_target(&link) {
            Ok(t) => Ok(worktree_of(root, &normalize(&t)).map(|rev| (link, rev))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if !entry.file_type()?.is_symlink() {
            continue;
        }
        let link = entry.path();
        if let Ok(t) = link_target(&link)
            && let Some(rev) = worktree_of(root, &normalize(&t))
        {
            found.push((link, rev));
        }
    }
    found.sort();
    Ok(if found.len() == 1 { found.pop() } else { None })
}

/// Lexically normalize `a/./b/../c` without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Detect the layout of a source and resolve its link once.
pub fn resolve(cfg: &SourceConfig) -> Result<Resolved, Unavailable> {
    let path = &cfg.path;
    let meta = fs::symlink_metadata(path).map_err(|e| unavailable(path, io_reason(&e)))?;

    // `path` may itself be the git-sync link: ROOT/LINK -> .worktrees/<hash>.
    if meta.file_type().is_symlink() && matches!(cfg.layout, LayoutKind::Auto | LayoutKind::GitSync) {
        let target = link_target(path).map_err(|e| unavailable(path, io_reason(&e)))?;
        if let Some(parent) = path.parent()
            && let Some(rev) = worktree_of(parent, &normalize(&target))
        {
            return Ok(finish(
                cfg,
                Layout::GitSync,
                parent.to_owned(),
                Some(path.to_owned()),
                Some(rev),
                path.to_owned(),
            ));
        }
    }
    let meta = fs::metadata(path).map_err(|e| unavailable(path, io_reason(&e)))?;
    if !meta.is_dir() {
        return Err(unavailable(path, "is not a directory"));
    }
    let data_link = path.join("..data");
    let has_data = fs::symlink_metadata(&data_link)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    let has_worktrees = fs::symlink_metadata(path.join(".worktrees"))
        .map(|m| m.is_dir())
        .unwrap_or(false);

    let layout = match cfg.layout {
        LayoutKind::Plain => Layout::Plain,
        LayoutKind::Configmap => Layout::Configmap,
        LayoutKind::GitSync => Layout::GitSync,
        LayoutKind::Auto if has_data => Layout::Configmap,
        LayoutKind::Auto if has_worktrees || cfg.link.is_some() => Layout::GitSync,
        LayoutKind::Auto => Layout::Plain,
    };
    match layout {
        Layout::Plain => Ok(finish(cfg, layout, path.clone(), None, None, path.clone())),
        Layout::Configmap => {
            if !has_data {
                return Err(unavailable(path, "ConfigMap layout has no ..data link yet"));
            }
            let target = fs::read_link(&data_link).map_err(|e| unavailable(&data_link, io_reason(&e)))?;
            let rev = normalize(&target);
            if rev.is_absolute() || rev.components().count() != 1 {
                return Err(unavailable(
                    &data_link,
                    format!("points to {}, outside the source", target.display()),
                ));
            }
            Ok(finish(
                cfg,
                layout,
                path.clone(),
                Some(data_link),
                Some(rev),
                path.clone(),
            ))
        }
        Layout::GitSync => match find_git_sync_link(path, cfg.link.as_deref()) {
            Ok(Some((link, rev))) => {
                let display = link.clone();
                Ok(finish(cfg, layout, path.clone(), Some(link), Some(rev), display))
            }
            Ok(None) => Err(unavailable(
                path,
                match &cfg.link {
                    Some(l) => format!("git-sync link {l} does not point into .worktrees/ yet"),
                    None => "git-sync has not published a worktree link yet".to_owned(),
                },
            )),
            Err(e) => Err(unavailable(path, io_reason(&e))),
        },
    }
}

fn finish(
    cfg: &SourceConfig,
    layout: Layout,
    root: PathBuf,
    link: Option<PathBuf>,
    revision: Option<PathBuf>,
    display: PathBuf,
) -> Resolved {
    let mut dir = match &revision {
        Some(rev) => root.join(rev),
        None => root.clone(),
    };
    let mut display_dir = display;
    if let Some(sub) = &cfg.subdir {
        dir.push(sub);
        display_dir.push(sub);
    }
    Resolved {
        layout,
        root,
        link,
        revision,
        dir,
        display_dir,
    }
}

/// What a file's metadata said when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of_stat(st: &nix::sys::stat::FileStat) -> Self {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size.max(0) as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn of(m: &fs::Metadata) -> Self {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Changed long enough before `read_at` that a later change cannot share
    /// its timestamps: file times tick in steps of up to a few milliseconds,
    /// so a file read just after a write could be written again unseen.
    fn settled(&self, read_at: Duration) -> bool {
        self.changed() + SETTLE < read_at
    }

    /// The change time, since the epoch.
    fn changed(&self) -> Duration {
        Duration::new(self.ctime.0.max(0) as u64, self.ctime.1.clamp(0, 999_999_999) as u32)
    }
}

/// The change time of `path` itself (a link is not followed), since the epoch.
fn ctime_of(path: &Path) -> Duration {
    fs::symlink_metadata(path)
        .map(|m| Stamp::of(&m).changed())
        .unwrap_or_default()
}

/// Files changed more recently than this before they were read are read again.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    content: String,
    sha256: String,
}

/// The files of one source as last read. A file whose metadata (device,
/// inode, size, mtime, ctime) is unchanged since a settled read is not read
/// again: with a thousand files, one changed file costs one read, not a
/// thousand.
#[derive(Debug, Default)]
pub struct ReadCache {
    /// The directory the files were read from (a layout swap changes it).
    dir: PathBuf,
    /// By file name.
    files: HashMap<String, Cached>,
    /// Added to the clock when judging whether a file has settled (tests).
    skew: Duration,
}

impl ReadCache {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn now_since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

enum Read1 {
    File(SourceFile),
    Refused(String),
    /// Read, but refused for its bytes: the reason and the lossy text.
    Undecodable(String, String),
    Skip,
    /// The directory went away under us: a swap happened.
    Vanished,
}

/// The cache a read looks in (`old`) and the one it fills (`new`).
struct CacheIo {
    /// The directory being read, for one `fstatat` per file.
    dir: Option<fs::File>,
    old: HashMap<String, Cached>,
    new: HashMap<String, Cached>,
    read_at: Duration,
    /// The newest file change time seen.
    newest: Duration,
}

impl CacheIo {
    /// The cached file `name`, when its metadata still is `stamp`; kept for
    /// the next snapshot.
    fn take(&mut self, name: &str, stamp: &Stamp, display: &Path) -> Option<SourceFile> {
        if self.old.get(name).is_none_or(|hit| hit.stamp != *stamp) {
            return None;
        }
        let (key, hit) = self.old.remove_entry(name)?;
        let file = SourceFile {
            path: display.to_owned(),
            content: hit.content.clone(),
            sha256: hit.sha256.clone(),
        };
        self.new.insert(key, hit);
        Some(file)
    }
}

fn read_entry(
    dir: &Path,
    root_canon: &Path,
    name: &str,
    display: PathBuf,
    limits: &Limits,
    mut cache: Option<&mut CacheIo>,
) -> Read1 {
    let path = dir.join(name);
    // The common case first: a regular file, unchanged since a settled read.
    if let Some(c) = cache.as_deref_mut()
        && let Some(d) = &c.dir
        && let Ok(st) = nix::sys::stat::fstatat(d, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        && st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG
        && (st.st_size.max(0) as u64) <= limits.max_file_bytes
        && let Some(file) = c.take(name, &Stamp::of_stat(&st), &display)
    {
        c.newest = c.newest.max(Stamp::of_stat(&st).changed());
        return Read1::File(file);
    }
    let lmeta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Read1::Vanished,
        Err(e) => return Read1::Refused(format!("cannot stat: {}", io_reason(&e))),
    };
    let mut open_path = path.clone();
    let is_link = lmeta.file_type().is_symlink();
    if is_link {
        let canon = match fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Read1::Refused("dangling symlink".into());
            }
            Err(e) => return Read1::Refused(format!("cannot resolve symlink: {}", io_reason(&e))),
        };
        if !canon.starts_with(root_canon) {
            return Read1::Refused(format!(
                "symlink leaves the source root (points to {})",
                canon.display()
            ));
        }
        open_path = canon;
    }
    let meta = if is_link {
        match fs::metadata(&open_path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Read1::Vanished,
            Err(e) => return Read1::Refused(format!("cannot stat: {}", io_reason(&e))),
        }
    } else {
        lmeta
    };
    if meta.is_dir() {
        return Read1::Skip;
    }
    if !meta.is_file() {
        return Read1::Refused("not a regular file".into());
    }
    if meta.len() > limits.max_file_bytes {
        return Read1::Refused(format!(
            "{} bytes is over the limit of {} bytes (max_file_bytes)",
            meta.len(),
            limits.max_file_bytes
        ));
    }
    let stamp = Stamp::of(&meta);
    if let Some(c) = cache.as_deref_mut() {
        c.newest = c.newest.max(stamp.changed());
    }
    // A symlink (a ConfigMap key) whose target is unchanged.
    if let Some(c) = cache.as_deref_mut()
        && let Some(file) = c.take(name, &stamp, &display)
    {
        return Read1::File(file);
    }
    // O_NONBLOCK so that a file swapped for a FIFO between stat and open cannot block us.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(&open_path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Read1::Vanished,
        Err(e) => return Read1::Refused(format!("cannot open: {}", io_reason(&e))),
    };
    let mut buf = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = file.take(limits.max_file_bytes + 1).read_to_end(&mut buf) {
        return Read1::Refused(format!("cannot read: {}", io_reason(&e)));
    }
    if buf.len() as u64 > limits.max_file_bytes {
        return Read1::Refused(format!(
            "grew past the limit of {} bytes (max_file_bytes) while read",
            limits.max_file_bytes
        ));
    }
    // A UTF-8 byte-order mark is not part of the text: the parser would
    // reject it as an unexpected character.
    let body = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf);
    let sha256 = sha256_hex(body);
    let content = match std::str::from_utf8(body) {
        Ok(s) => s.to_owned(),
        Err(e) => {
            return Read1::Undecodable(
                format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
                String::from_utf8_lossy(body).into_owned(),
            );
        }
    };
    if let Some(pos) = content.find('\0') {
        return Read1::Undecodable(
            format!("contains a NUL byte at offset {pos}"),
            content.replace('\0', " "),
        );
    }
    if let Some(c) = cache
        && stamp.settled(c.read_at)
        && file_unchanged(&open_path, &stamp)
    {
        c.new.insert(
            name.to_owned(),
            Cached {
                stamp,
                content: content.clone(),
                sha256: sha256.clone(),
            },
        );
    }
    Read1::File(SourceFile {
        path: display,
        content,
        sha256,
    })
}

/// The file still has the metadata it had before the read (it was not
/// written while we read it).
fn file_unchanged(path: &Path, before: &Stamp) -> bool {
    fs::metadata(path).map(|m| Stamp::of(&m) == *before).unwrap_or(false)
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
    match read_entry(dir, &root_canon, name, path.to_owned(), limits, None) {
        Read1::File(f) => Ok(f),
        Read1::Refused(r) | Read1::Undecodable(r, _) => Err(r),
        Read1::Skip => Err("is a directory".into()),
        Read1::Vanished => Err("does not exist".into()),
    }
}

/// Read every file of a resolved source. `None` when the directory vanished
/// (the revision was swapped out while we read).
fn read_dir_once(
    cfg: &SourceConfig,
    r: &Resolved,
    limits: &Limits,
    cache: &mut ReadCache,
) -> Result<Option<SourceSnapshot>, Unavailable> {
    let entries = match fs::read_dir(&r.dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound && r.link.is_some() => return Ok(None),
        Err(e) => return Err(unavailable(&r.display_dir, io_reason(&e))),
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => match e.file_name().into_string() {
                Ok(n) => names.push(n),
                Err(raw) => names.push(raw.to_string_lossy().into_owned() + "\u{0}"),
            },
            Err(e) if e.kind() == ErrorKind::NotFound && r.link.is_some() => return Ok(None),
            Err(e) => return Err(unavailable(&r.display_dir, io_reason(&e))),
        }
    }
    names.sort();
    let root_canon = fs::canonicalize(&r.root).map_err(|e| unavailable(&r.root, io_reason(&e)))?;
    let mut snap = SourceSnapshot {
        source: cfg.path.clone(),
        layout: r.layout,
        revision: r.revision.clone(),
        files: Vec::new(),
        refused: Vec::new(),
        newest_change: Duration::ZERO,
    };
    let old = if cache.dir == r.dir {
        std::mem::take(&mut cache.files)
    } else {
        HashMap::new()
    };
    let mut io = CacheIo {
        dir: (!old.is_empty()).then(|| fs::File::open(&r.dir).ok()).flatten(),
        new: HashMap::with_capacity(old.len()),
        old,
        read_at: now_since_epoch() + cache.skew,
        newest: Duration::ZERO,
    };
    for name in names {
        if let Some(lossy) = name.strip_suffix('\u{0}') {
            snap.refused.push(Refusal {
                path: r.display_dir.join(lossy),
                reason: "file name is not UTF-8".into(),
                text: None,
            });
            continue;
        }
        if skipped_name(&name) {
            continue;
        }
        let display = r.display_dir.join(&name);
        // Past the limit, files are refused by name without being read.
        if snap.files.len() >= limits.max_files {
            match fs::symlink_metadata(r.dir.join(&name)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => snap.refused.push(Refusal {
                    path: display,
                    reason: format!("the source holds more than {} files (max_profiles)", limits.max_files),
                    text: None,
                }),
                Err(e) if e.kind() == ErrorKind::NotFound && r.link.is_some() => return Ok(None),
                Err(_) => {}
            }
            continue;
        }
        match read_entry(&r.dir, &root_canon, &name, display.clone(), limits, Some(&mut io)) {
            Read1::File(f) => snap.files.push(f),
            Read1::Refused(reason) => snap.refused.push(Refusal {
                path: display,
                reason,
                text: None,
            }),
            Read1::Undecodable(reason, text) => snap.refused.push(Refusal {
                path: display,
                reason,
                text: Some(text),
            }),
            Read1::Skip => {}
            Read1::Vanished if r.link.is_some() => return Ok(None),
            // A plain source: a file removed while we read is simply gone.
            Read1::Vanished => {}
        }
    }
    cache.dir = r.dir.clone();
    cache.files = io.new;
    // Stat the directories after the read: a rename that raced the read
    // shows in their change times.
    let mut newest = io.newest.max(ctime_of(&r.dir)).max(ctime_of(&r.root));
    if let Some(link) = &r.link {
        newest = newest.max(ctime_of(link));
    }
    snap.newest_change = newest;
    Ok(Some(snap))
}

/// Take a snapshot of one source: one revision, never a mix.
pub fn snapshot(cfg: &SourceConfig, limits: &Limits) -> SnapshotResult {
    snapshot_cached(cfg, limits, &mut ReadCache::default())
}

/// [`snapshot`], reading only the files that changed since `cache` was filled.
pub fn snapshot_cached(cfg: &SourceConfig, limits: &Limits, cache: &mut ReadCache) -> SnapshotResult {
    for _ in 0..SWAP_RETRIES {
        let r = match resolve(cfg) {
            Ok(r) => r,
            Err(u) => return SnapshotResult::Unavailable(u),
        };
        let snap = match read_dir_once(cfg, &r, limits, cache) {
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
    SnapshotResult::Unavailable(unavailable(
        &cfg.path,
        "the source kept changing while it was read; will retry",
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn src(path: &Path) -> SourceConfig {
        SourceConfig {
            path: path.to_owned(),
            layout: LayoutKind::Auto,
            link: None,
            subdir: None,
        }
    }
    const LIMITS: Limits = Limits {
        max_file_bytes: 1000,
        max_files: 100,
    };

    fn ok(r: SnapshotResult) -> SourceSnapshot {
        match r {
            SnapshotResult::Ok(s) => s,
            SnapshotResult::Unavailable(u) => panic!("unavailable: {u:?}"),
        }
    }
    fn names(s: &SourceSnapshot) -> Vec<String> {
        s.files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// Build a ConfigMap volume: ..<rev>/keys, ..data -> ..<rev>, key -> ..data/key.
    fn configmap_publish(root: &Path, rev: &str, files: &[(&str, &str)]) {
        let d = root.join(rev);
        fs::create_dir_all(&d).unwrap();
        for (k, v) in files {
            fs::write(d.join(k), v).unwrap();
        }
        let tmp = root.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        symlink(rev, &tmp).unwrap();
        fs::rename(&tmp, root.join("..data")).unwrap();
        for (k, _) in files {
            let _ = symlink(format!("..data/{k}"), root.join(k));
        }
    }

    fn gitsync_publish(root: &Path, hash: &str, files: &[(&str, &str)]) {
        let d = root.join(".worktrees").join(hash);
        fs::create_dir_all(&d).unwrap();
        for (k, v) in files {
            fs::write(d.join(k), v).unwrap();
        }
        let tmp = root.join("tmp-link");
        let _ = fs::remove_file(&tmp);
        symlink(format!(".worktrees/{hash}"), &tmp).unwrap();
        fs::rename(&tmp, root.join("current")).unwrap();
    }

    #[test]
    fn plain_layout_reads_files_and_skips_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        for n in [
            "a",
            "b",
            ".hidden",
            "c~",
            "d.dpkg-old",
            "e.rpmnew",
            ".#lock",
            "README.md",
            "#x#",
        ] {
            fs::write(p.join(n), "profile x {}\n").unwrap();
        }
        fs::create_dir(p.join("sub")).unwrap();
        fs::write(p.join("sub/inner"), "x").unwrap();
        let s = ok(snapshot(&src(p), &LIMITS));
        assert_eq!(s.layout, Layout::Plain);
        assert_eq!(names(&s), ["a", "b"]);
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert_eq!(s.files[0].sha256, sha256_hex(b"profile x {}\n"));
        assert_eq!(s.files[0].path, p.join("a"));
    }

    #[test]
    fn configmap_layout_reads_through_data_link() {
        let t = tempfile::tempdir().unwrap();
        configmap_publish(t.path(), "..2026_01_01", &[("p1", "one"), ("p2", "two")]);
        let s = ok(snapshot(&src(t.path()), &LIMITS));
        assert_eq!(s.layout, Layout::Configmap);
        assert_eq!(names(&s), ["p1", "p2"]);
        assert_eq!(s.files[0].path, t.path().join("p1"));
        assert_eq!(s.revision.as_deref(), Some(Path::new("..2026_01_01")));
    }

    #[test]
    fn git_sync_layout_from_root_and_from_link() {
        let t = tempfile::tempdir().unwrap();
        gitsync_publish(t.path(), "abc", &[("p1", "one")]);
        fs::create_dir_all(t.path().join(".worktrees/abc/profiles")).unwrap();
        fs::write(t.path().join(".worktrees/abc/profiles/q"), "q").unwrap();
        let s = ok(snapshot(&src(t.path()), &LIMITS));
        assert_eq!(s.layout, Layout::GitSync);
        assert_eq!(names(&s), ["p1"]);
        assert_eq!(s.files[0].path, t.path().join("current/p1"));
        // The configured path is the link itself, with a subdirectory.
        let mut c = src(&t.path().join("current"));
        c.subdir = Some("profiles".into());
        let s = ok(snapshot(&c, &LIMITS));
        assert_eq!(s.layout, Layout::GitSync);
        assert_eq!(names(&s), ["q"]);
        assert_eq!(s.files[0].path, t.path().join("current/profiles/q"));
    }

    #[test]
    fn git_sync_before_first_publish_is_unavailable_not_empty() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join(".worktrees")).unwrap();
        match snapshot(&src(t.path()), &LIMITS) {
            SnapshotResult::Unavailable(u) => assert!(u.reason.contains("git-sync"), "{u:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_and_non_directory_sources_are_unavailable() {
        let t = tempfile::tempdir().unwrap();
        match snapshot(&src(&t.path().join("nope")), &LIMITS) {
            SnapshotResult::Unavailable(u) => assert_eq!(u.reason, "does not exist"),
            other => panic!("{other:?}"),
        }
        fs::write(t.path().join("file"), "x").unwrap();
        match snapshot(&src(&t.path().join("file")), &LIMITS) {
            SnapshotResult::Unavailable(u) => assert_eq!(u.reason, "is not a directory"),
            other => panic!("{other:?}"),
        }
        let mut c = src(t.path());
        c.layout = LayoutKind::Configmap;
        match snapshot(&c, &LIMITS) {
            SnapshotResult::Unavailable(u) => assert!(u.reason.contains("..data"), "{u:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_refusal_kind_has_its_message() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("src");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("big"), vec![b'a'; 1001]).unwrap();
        fs::write(root.join("latin1"), b"profile \xe9 {}").unwrap();
        fs::write(root.join("nul"), b"profile a {}\0").unwrap();
        fs::write(t.path().join("outside"), "x").unwrap();
        symlink(t.path().join("outside"), root.join("escape")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        fs::write(root.join("target"), "ok").unwrap();
        symlink("target", root.join("inside")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let s = ok(snapshot(&src(&root), &LIMITS));
        assert_eq!(names(&s), ["inside", "target"]);
        let got: Vec<(String, &str)> = s
            .refused
            .iter()
            .map(|r| {
                (
                    r.path.file_name().unwrap().to_string_lossy().into_owned(),
                    r.reason.as_str(),
                )
            })
            .collect();
        let want = [
            ("big", "1001 bytes is over the limit of 1000 bytes (max_file_bytes)"),
            ("dangling", "dangling symlink"),
            ("escape", "symlink leaves the source root"),
            ("fifo", "not a regular file"),
            ("latin1", "not UTF-8 (invalid byte at offset 8)"),
            ("nul", "contains a NUL byte at offset 12"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((gn, gr), (wn, wr)) in got.iter().zip(want) {
            assert_eq!(gn, wn);
            assert!(gr.starts_with(wr), "{gn}: {gr}");
        }
    }

    #[test]
    fn too_many_files_refuses_the_rest_by_name() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..5 {
            fs::write(t.path().join(format!("p{i}")), "x").unwrap();
        }
        let s = ok(snapshot(
            &src(t.path()),
            &Limits {
                max_file_bytes: 10,
                max_files: 3,
            },
        ));
        assert_eq!(names(&s), ["p0", "p1", "p2"]);
        assert_eq!(s.refused.len(), 2);
        assert_eq!(s.refused[0].path, t.path().join("p3"));
        assert_eq!(s.refused[0].reason, "the source holds more than 3 files (max_profiles)");
    }

    /// Swap the link back and forth as fast as possible while snapshots are
    /// taken; each snapshot must hold one revision's files, never a mix.
    fn swap_race(publish: fn(&Path, &str, &[(&str, &str)]), cleanup: fn(&Path, &str)) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_owned();
        let files_a: Vec<(String, String)> = (0..30).map(|i| (format!("p{i:02}"), "rev-a".to_owned())).collect();
        let files_b: Vec<(String, String)> = (0..30).map(|i| (format!("p{i:02}"), "rev-b".to_owned())).collect();
        let as_ref = |v: &Vec<(String, String)>| v.iter().map(|(a, b)| (a.clone(), b.clone())).collect::<Vec<_>>();
        let fa = as_ref(&files_a);
        let fa: Vec<(&str, &str)> = fa.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        publish(&root, "rev0", &fa);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                let mut n = 1u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let files = if n.is_multiple_of(2) { &files_a } else { &files_b };
                    let f: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                    let rev = format!("rev{n}");
                    publish(&root, &rev, &f);
                    // Delete the previous revision, as the tools do.
                    cleanup(&root, &format!("rev{}", n - 1));
                    n += 1;
                }
            })
        };
        let cfg = src(&root);
        let mut seen = 0;
        for _ in 0..200 {
            if let SnapshotResult::Ok(s) = snapshot(&cfg, &LIMITS) {
                let contents: std::collections::BTreeSet<&str> = s.files.iter().map(|f| f.content.as_str()).collect();
                assert_eq!(s.files.len(), 30, "a snapshot lost files: {:?}", s.revision);
                assert_eq!(contents.len(), 1, "mixed revisions: {contents:?}");
                seen += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(seen > 0, "no snapshot succeeded");
    }

    #[test]
    fn configmap_swap_during_snapshot_never_mixes() {
        swap_race(
            |root, rev, files| configmap_publish(root, &format!("..{rev}"), files),
            |root, rev| {
                let _ = fs::remove_dir_all(root.join(format!("..{rev}")));
            },
        );
    }

    #[test]
    fn git_sync_swap_during_snapshot_never_mixes() {
        swap_race(gitsync_publish, |root, rev| {
            let _ = fs::remove_dir_all(root.join(".worktrees").join(rev));
        });
    }

    #[test]
    fn read_cache_serves_settled_files_and_sees_every_change() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        fs::write(p.join("a"), "profile custom.a {}\n").unwrap();
        fs::write(p.join("b"), "profile custom.b {}\n").unwrap();
        let contents = |s: SourceSnapshot| -> Vec<String> { s.files.into_iter().map(|f| f.content).collect() };

        // Just written: not settled, so not kept.
        let mut cache = ReadCache::default();
        ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
        assert!(cache.is_empty());

        // Settled (as if read later): kept, and served from the cache.
        cache.skew = Duration::from_secs(10);
        let first = contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache)));
        assert_eq!(cache.len(), 2);
        assert_eq!(contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache))), first);

        // Same size, rewritten in place: seen.
        fs::write(p.join("a"), "profile custom.x {}\n").unwrap();
        // Replaced by a rename: seen.
        fs::write(p.join(".b.new"), "profile custom.y {}\n").unwrap();
        fs::rename(p.join(".b.new"), p.join("b")).unwrap();
        // Removed and added.
        fs::write(p.join("c"), "profile custom.c {}\n").unwrap();
        let now = contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache)));
        assert_eq!(
            now,
            [
                "profile custom.x {}\n",
                "profile custom.y {}\n",
                "profile custom.c {}\n"
            ]
        );
        fs::remove_file(p.join("a")).unwrap();
        let now = contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache)));
        assert_eq!(now, ["profile custom.y {}\n", "profile custom.c {}\n"]);
        assert_eq!(cache.len(), 2);

        // A file grown past the limit is refused even though it was cached.
        fs::write(p.join("c"), "x".repeat(100)).unwrap();
        let tight = Limits {
            max_file_bytes: 50,
            max_files: 10,
        };
        let s = ok(snapshot_cached(&src(p), &tight, &mut cache));
        assert_eq!(s.refused.len(), 1);
    }

    #[test]
    fn hostile_source_layouts() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        // The source is a symlink loop.
        symlink(p.join("loop"), p.join("loop")).unwrap();
        match snapshot(&src(&p.join("loop")), &LIMITS) {
            SnapshotResult::Unavailable(u) => assert!(u.reason.contains("symbolic links"), "{u:?}"),
            other => panic!("{other:?}"),
        }
        // A file in it is a symlink loop, or a 10 MiB file: refused by name;
        // the 10 MiB file is never read (its size is enough).
        let root = p.join("src");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("good"), "profile custom.good {}\n").unwrap();
        symlink(root.join("self"), root.join("self")).unwrap();
        fs::File::create(root.join("huge")).unwrap().set_len(10 << 20).unwrap();
        let s = ok(snapshot(&src(&root), &LIMITS));
        assert_eq!(names(&s), ["good"]);
        let reasons: Vec<String> = s
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.path.display(), r.reason))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].ends_with("huge: 10485760 bytes is over the limit of 1000 bytes (max_file_bytes)"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("self: cannot resolve symlink") && reasons[1].contains("symbolic links"),
            "{reasons:?}"
        );
    }

    #[test]
    fn mode_000_source_and_file() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("src");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("a"), "profile custom.a {}\n").unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o000)).unwrap();
        let result = snapshot(&src(&root), &LIMITS);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            // armord runs as root: permissions do not hide a source from it.
            assert_eq!(names(&ok(result)), ["a"]);
        } else {
            match result {
                SnapshotResult::Unavailable(u) => assert!(u.reason.contains("Permission denied"), "{u:?}"),
                other => panic!("{other:?}"),
            }
            let s = ok(snapshot(&src(&root), &LIMITS));
            assert!(s.refused[0].reason.contains("Permission denied"), "{s:?}");
        }
    }

    #[test]
    fn a_hundred_thousand_files_are_refused_past_the_limit_unread() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for i in 0..100_000 {
            fs::write(root.join(format!("p{i:06}")), "").unwrap();
        }
        let limits = Limits {
            max_file_bytes: 1000,
            max_files: 1000,
        };
        // Files past the limit are not examined: a FIFO there would be
        // refused as "not a regular file" if it were.
        fs::remove_file(root.join("p099999")).unwrap();
        nix::unistd::mkfifo(&root.join("p099999"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let s = ok(snapshot(&src(root), &limits));
        assert_eq!(s.files.len(), 1000);
        assert_eq!(s.refused.len(), 99_000);
        assert!(s.refused.iter().all(|r| r.reason.contains("more than 1000 files")));
        assert_eq!(s.refused[0].path, root.join("p001000"));
    }

    #[test]
    fn skip_rules() {
        for n in [
            ".x",
            "..data",
            "a~",
            "a.dpkg-new",
            "a.dpkg-old",
            "a.rpmsave",
            ".#a",
            "#a#",
            "x.md",
        ] {
            assert!(skipped_name(n), "{n}");
        }
        for n in ["usr.bin.foo", "custom.nginx", "a.profile"] {
            assert!(!skipped_name(n), "{n}");
        }
    }
}
