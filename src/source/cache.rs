//! The read cache: a file whose metadata is unchanged since a settled read
//! is served from memory.

use super::*;

/// What a file's metadata said when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
}

impl Stamp {
    pub(super) fn of_stat(st: &nix::sys::stat::FileStat) -> Self {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size.max(0) as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    pub(super) fn of(m: &fs::Metadata) -> Self {
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
    pub(super) fn settled(&self, read_at: Duration) -> bool {
        self.changed() + SETTLE < read_at
    }

    /// The change time, since the epoch.
    pub(super) fn changed(&self) -> Duration {
        Duration::new(self.ctime.0.max(0) as u64, self.ctime.1.clamp(0, 999_999_999) as u32)
    }
}

/// The change time of `path` itself (a link is not followed), since the epoch.
pub(super) fn ctime_of(path: &Path) -> Duration {
    fs::symlink_metadata(path)
        .map(|m| Stamp::of(&m).changed())
        .unwrap_or_default()
}

/// Files changed more recently than this before they were read are read again.
pub(super) const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub(super) stamp: Stamp,
    /// The file as it was last named, and its text: shared with every
    /// read that serves it (and the plan's and the manifest's entries made
    /// from those), not copied.
    pub(super) path: Arc<Path>,
    pub(super) content: Arc<str>,
    pub(super) sha256: crate::sha::Sha,
    /// Read through a symlink: its target may change with no event in the
    /// source directory, so it is never trusted without a look.
    pub(super) link: bool,
    /// Changed long enough before it was read that its metadata tells any
    /// later change: only then is it served by its metadata in a full read.
    /// A file read sooner is served only by a read of reported names, where
    /// its next change is known by its event, not by its timestamps.
    pub(super) settled: bool,
}

/// The files of one source as last read. A file whose metadata (device,
/// inode, size, mtime, ctime) is unchanged since a settled read is not read
/// again: with a thousand files, one changed file costs one read, not a
/// thousand.
#[derive(Debug, Default)]
pub struct ReadCache {
    /// The directory the files were read from (a layout swap changes it).
    pub(super) dir: PathBuf,
    /// By file name.
    pub(super) files: HashMap<Box<str>, Cached>,
    /// Added to the clock when judging whether a file has settled (tests).
    pub(super) skew: Duration,
    /// Every entry name of `dir` at the last read: what a read of only the
    /// names inotify reported starts from. `None` until a full read of a
    /// plain directory.
    pub(super) listing: Option<BTreeSet<String>>,
    /// The names of `listing` that a read by name looks at although no
    /// event named them: entries the cache does not hold (refused, or
    /// changed while read), and files read through a symlink.
    pub(super) untrusted: BTreeSet<String>,
}

impl ReadCache {
    /// Whether a read by name looks at the entry `name` of `listing` even
    /// when no event named it.
    pub(super) fn needs_look(&self, name: &str) -> bool {
        !skipped_name(name) && name != MANIFEST && name != SIGNATURE && self.files.get(name).is_none_or(|c| c.link)
    }

    /// The files a full read would serve from memory (settled ones).
    pub fn len(&self) -> usize {
        self.files.values().filter(|c| c.settled).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(super) fn now_since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The cache a read looks in (`old`) and the one it fills (`new`).
pub(super) struct CacheIo {
    /// The directory being read, for one `fstatat` per file.
    pub(super) dir: Option<fs::File>,
    pub(super) old: HashMap<Box<str>, Cached>,
    pub(super) new: HashMap<Box<str>, Cached>,
    pub(super) read_at: Duration,
    /// The newest file change time seen.
    pub(super) newest: Duration,
}

impl CacheIo {
    /// The cached file `name`, when its metadata still is `stamp`; kept for
    /// the next snapshot.
    pub(super) fn take(&mut self, name: &str, stamp: &Stamp, display: &mut PathBuf) -> Option<SourceFile> {
        if self.old.get(name).is_none_or(|hit| !hit.settled || hit.stamp != *stamp) {
            return None;
        }
        self.keep(name, display)
    }

    /// The cached file `name` without a look at the file system: for a
    /// name no event has reported since the last read. Never a file read
    /// through a symlink.
    pub(super) fn take_trusted(&mut self, name: &str, display: &mut PathBuf) -> Option<SourceFile> {
        if self.old.get(name).is_none_or(|hit| hit.link) {
            return None;
        }
        self.keep(name, display)
    }

    /// The cached file `name`, named `display` (taken: a hit ends the
    /// read of that entry).
    fn keep(&mut self, name: &str, display: &mut PathBuf) -> Option<SourceFile> {
        let (key, mut hit) = self.old.remove_entry(name)?;
        if *hit.path != **display {
            hit.path = std::mem::take(display).into();
        }
        let file = SourceFile {
            path: hit.path.clone(),
            content: hit.content.clone(),
            sha256: hit.sha256.clone(),
        };
        self.new.insert(key, hit);
        Some(file)
    }
}
