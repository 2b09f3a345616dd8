//! How long each source has stood still: fingerprints of its reads, change
//! times and watch events.

use super::*;

/// What the reads of one source found, and since when.
#[derive(Debug, Clone)]
pub(super) struct Still {
    pub(super) fingerprint: u64,
    /// Each entry's share of `fingerprint`, by the path the operator
    /// knows it by: a look at some entries updates it without the rest.
    pub(super) parts: Parts,
    /// When the source last changed, as far as reads, change times and
    /// watch events tell.
    pub(super) since: Instant,
    /// The last two reads agreed.
    pub(super) confirmed: bool,
    pub(super) read_at: Instant,
}

/// Each entry's share of a fingerprint, by its path (a file's shared with
/// the read cache).
pub(super) type Parts = HashMap<Arc<Path>, u64>;

/// One entry's share of a fingerprint: its path and its hash, or why it
/// was refused.
pub(super) fn part(path: &Path, what: Result<&str, &str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Paths by their bytes: `Path`'s own hash walks its components.
    path.as_os_str().as_encoded_bytes().hash(&mut h);
    what.hash(&mut h);
    h.finish()
}

/// Each file's and each refusal's share, by its path.
pub(super) fn shares<'a>(
    files: &'a [source::SourceFile],
    refused: &'a [source::Refusal],
) -> impl Iterator<Item = (Arc<Path>, u64)> {
    files
        .iter()
        .map(|f| (f.path.clone(), part(&f.path, Ok(&f.sha256))))
        .chain(
            refused
                .iter()
                .map(|r| (Arc::from(r.path.as_path()), part(&r.path, Err(&r.reason)))),
        )
}

/// A fingerprint: the revision's share, then the sum of the entries'
/// shares, so that one entry can be taken out and put back alone.
pub(super) fn fingerprint_of<'a>(revision: Option<&Path>, parts: impl IntoIterator<Item = &'a u64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    revision.hash(&mut h);
    parts.into_iter().fold(h.finish(), |fp, p| fp.wrapping_add(*p))
}

/// What a read of a source found: its revision, every file and its hash,
/// every refusal. Two reads with the same fingerprint saw the same source.
pub(super) fn fingerprint(snap: &source::SourceSnapshot) -> (u64, Parts) {
    let parts: Parts = shares(&snap.files, &snap.refused).collect();
    (fingerprint_of(snap.revision.as_deref(), parts.values()), parts)
}

/// The instant a wall-clock time (since the epoch) was, at most `now`.
pub(super) fn instant_of(wall: Duration, now: Instant) -> Instant {
    let wall_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    now.checked_sub(wall_now.saturating_sub(wall)).unwrap_or(now)
}

/// Of the sources in `of`, those that a read now finds different from their
/// last read (or that cannot be read now).
pub(super) fn moved_sources(
    config: &Config,
    of: &std::collections::HashSet<&Path>,
    limits: &Limits,
    caches: &mut HashMap<PathBuf, source::ReadCache>,
    stillness: &HashMap<PathBuf, Still>,
) -> std::collections::HashSet<PathBuf> {
    let mut moved = std::collections::HashSet::new();
    for src in config.sources.iter().filter(|s| of.contains(s.path.as_path())) {
        let cache = caches.entry(src.path.clone()).or_default();
        let same = match source::snapshot_cached(src, limits, cache) {
            SnapshotResult::Ok(snap) => stillness
                .get(&src.path)
                .is_some_and(|st| st.fingerprint == fingerprint(&snap).0),
            SnapshotResult::Unavailable(_) => false,
        };
        if !same {
            moved.insert(src.path.clone());
        }
    }
    moved
}
