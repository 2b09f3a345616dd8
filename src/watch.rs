//! inotify over every source and over what its layout swaps, re-armed after
//! every reconcile, with a debounce that coalesces bursts.

use crate::config::SourceConfig;
use crate::source;
use futures_util::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify: {0}")]
    Init(std::io::Error),
    #[error("inotify: reading events: {0}")]
    Read(std::io::Error),
    #[error("inotify: the event stream ended")]
    Closed,
}

/// What the watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Something in or around a source changed.
    Changed(PathBuf),
    /// The kernel dropped events: everything must be looked at again.
    Overflow,
}

/// A directory to watch, and which names in it matter (`None`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    dir: PathBuf,
    names: Option<BTreeSet<OsString>>,
}

const DIR_EVENTS: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// The directories one source needs watched: the nearest existing ancestor
/// (for the source appearing, vanishing or being replaced by a rename), the
/// source itself (for files and for the ConfigMap/git-sync link swaps), and
/// the directory the snapshot reads from.
fn targets(cfg: &SourceConfig) -> Vec<Target> {
    let mut out = Vec::new();
    // Walk up until a directory exists; watch it for the next component.
    let mut child = cfg.path.clone();
    while let Some(parent) = child.parent().map(Path::to_owned) {
        if parent.is_dir() {
            if let Some(name) = child.file_name() {
                out.push(Target {
                    dir: parent,
                    names: Some([name.to_owned()].into()),
                });
            }
            break;
        }
        child = parent;
    }
    if cfg.path.is_dir() {
        out.push(Target {
            dir: cfg.path.clone(),
            names: None,
        });
    }
    if let Ok(r) = source::resolve(cfg) {
        if r.root != cfg.path && r.root.is_dir() {
            out.push(Target {
                dir: r.root.clone(),
                names: None,
            });
        }
        if r.dir.is_dir() && r.dir != cfg.path {
            out.push(Target {
                dir: r.dir,
                names: None,
            });
        }
    }
    out
}

pub struct Watcher {
    stream: EventStream<Vec<u8>>,
    watches: Watches,
    armed: HashMap<WatchDescriptor, (PathBuf, Option<BTreeSet<OsString>>)>,
}

impl Watcher {
    pub fn new() -> Result<Self, WatchError> {
        let inotify = Inotify::init().map_err(WatchError::Init)?;
        let stream = inotify
            .into_event_stream(vec![0u8; 64 * 1024])
            .map_err(WatchError::Init)?;
        let watches = stream.watches();
        Ok(Watcher {
            stream,
            watches,
            armed: HashMap::new(),
        })
    }

    /// (Re-)arm the watches for these sources: after a swap the resolved
    /// directories differ, and a source that appeared needs its own watch.
    pub fn arm(&mut self, sources: &[SourceConfig]) {
        let mut merged: BTreeMap<PathBuf, Option<BTreeSet<OsString>>> = BTreeMap::new();
        for t in sources.iter().flat_map(targets) {
            match (merged.entry(t.dir).or_insert_with(|| Some(BTreeSet::new())), t.names) {
                (slot @ Some(_), None) => *slot = None,
                (Some(set), Some(names)) => set.extend(names),
                (None, _) => {}
            }
        }
        let mut now = HashMap::new();
        for (dir, names) in merged {
            match self.watches.add(&dir, DIR_EVENTS | WatchMask::ONLYDIR) {
                Ok(wd) => {
                    now.insert(wd, (dir, names));
                }
                // It may have vanished between the check and the call; the
                // parent's watch reports when it comes back.
                Err(e) => log::debug!("cannot watch {}: {e}", dir.display()),
            }
        }
        for wd in self.armed.keys() {
            if !now.contains_key(wd) {
                let _ = self.watches.remove(wd.clone());
            }
        }
        self.armed = now;
    }

    /// Wait for the next relevant change.
    pub async fn next(&mut self) -> Result<Change, WatchError> {
        loop {
            let ev = match self.stream.next().await {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => return Err(WatchError::Read(e)),
                None => return Err(WatchError::Closed),
            };
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                return Ok(Change::Overflow);
            }
            let Some((dir, names)) = self.armed.get(&ev.wd) else {
                continue;
            };
            if ev.mask.contains(EventMask::IGNORED) {
                // The directory is gone: the watch went with it.
                let dir = dir.clone();
                self.armed.remove(&ev.wd);
                return Ok(Change::Changed(dir));
            }
            match (&ev.name, names) {
                (Some(name), Some(names)) if !names.contains(name) => continue,
                (Some(name), _) => return Ok(Change::Changed(dir.join(name))),
                (None, _) => return Ok(Change::Changed(dir.clone())),
            }
        }
    }
}

/// Coalesces bursts: a reconcile runs `quiet` after the last change, but no
/// later than `max` after the first.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max: Duration,
    first: Option<Instant>,
    deadline: Option<Instant>,
}

impl Debounce {
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Debounce {
            quiet,
            max: max.max(quiet),
            first: None,
            deadline: None,
        }
    }

    pub fn poke(&mut self, now: Instant) {
        let first = *self.first.get_or_insert(now);
        self.deadline = Some((now + self.quiet).min(first + self.max));
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Has the deadline passed? Then the burst is over: reset.
    pub fn fire(&mut self, now: Instant) -> bool {
        match self.deadline {
            Some(d) if now >= d => {
                self.first = None;
                self.deadline = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LayoutKind;

    fn src(p: &Path) -> SourceConfig {
        SourceConfig {
            path: p.to_owned(),
            layout: LayoutKind::Auto,
            link: None,
            subdir: None,
            signatures: Default::default(),
        }
    }

    #[test]
    fn debounce_coalesces_and_caps() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(200), ms(1000));
        assert_eq!(d.deadline(), None);
        d.poke(t0);
        assert_eq!(d.deadline(), Some(t0 + ms(200)));
        d.poke(t0 + ms(150));
        assert_eq!(d.deadline(), Some(t0 + ms(350)));
        // A steady stream of changes cannot push it past the cap.
        for i in 0..20 {
            d.poke(t0 + ms(100 * i));
        }
        assert_eq!(d.deadline(), Some(t0 + ms(1000)));
        assert!(!d.fire(t0 + ms(999)));
        assert!(d.fire(t0 + ms(1000)));
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn targets_cover_missing_sources_and_layout_links() {
        let t = tempfile::tempdir().unwrap();
        // Missing two levels down: watch the nearest existing ancestor.
        let deep = t.path().join("a/b/profiles");
        let tg = targets(&src(&deep));
        assert_eq!(tg.len(), 1);
        assert_eq!(tg[0].dir, t.path());
        assert_eq!(tg[0].names, Some([OsString::from("a")].into()));
        // git-sync, configured as ROOT/LINK: the root is watched for swaps.
        std::fs::create_dir_all(t.path().join("gs/.worktrees/h1")).unwrap();
        std::os::unix::fs::symlink(".worktrees/h1", t.path().join("gs/cur")).unwrap();
        let tg = targets(&src(&t.path().join("gs/cur")));
        let dirs: Vec<&Path> = tg.iter().map(|t| t.dir.as_path()).collect();
        assert!(dirs.contains(&t.path().join("gs").as_path()), "{dirs:?}");
        assert!(dirs.contains(&t.path().join("gs/.worktrees/h1").as_path()), "{dirs:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sees_file_writes_and_link_swaps() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cm");
        std::fs::create_dir_all(root.join("..v1")).unwrap();
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        let mut w = Watcher::new().unwrap();
        w.arm(&[src(&root)]);
        // A ConfigMap swap is a rename of a new link over `..data`.
        std::fs::create_dir_all(root.join("..v2")).unwrap();
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(c, Change::Changed(_)), "{c:?}");
        // Events in the parent about other names are ignored; the source's own are not.
        std::fs::write(t.path().join("unrelated"), "x").unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let mut saw_root = false;
        while let Ok(Ok(Change::Changed(p))) = tokio::time::timeout(Duration::from_millis(500), w.next()).await {
            assert_ne!(p, t.path().join("unrelated"));
            saw_root |= p == root;
        }
        assert!(saw_root, "deleting the source was not seen");
    }
}
