//! Reading a resolved source: every file with the source's rules, through
//! one directory.

use super::*;

pub(super) enum Read1 {
    File(SourceFile),
    Refused(String),
    /// Read, but refused for its bytes: the reason and the lossy text.
    Undecodable(String, String),
    Skip,
    /// The directory went away under us: a swap happened.
    Vanished,
}

/// Read one directory entry by the source's rules: from the read cache when
/// nothing moved, else resolved (a symlink must stay inside the source),
/// checked against the limits, read and decoded.
pub(super) fn read_entry(
    dir: &Path,
    root_canon: &Path,
    name: &str,
    mut display: PathBuf,
    limits: &Limits,
    mut cache: Option<&mut CacheIo>,
    trusted: bool,
) -> Read1 {
    if let Some(file) = cached_entry(name, &mut display, limits, cache.as_deref_mut(), trusted) {
        return Read1::File(file);
    }
    let entry = match resolve(&dir.join(name), root_canon, limits) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let stamp = Stamp::of(&entry.meta);
    if let Some(c) = cache.as_deref_mut() {
        c.newest = c.newest.max(stamp.changed());
    }
    // A symlink (a ConfigMap key) whose target is unchanged.
    if let Some(c) = cache.as_deref_mut()
        && let Some(file) = c.take(name, &stamp, &mut display)
    {
        return Read1::File(file);
    }
    let (content, sha256) = match read_text(&entry, limits) {
        Ok((content, sha256)) => (content, crate::sha::Sha::from(sha256)),
        Err(r) => return r,
    };
    let content: Arc<str> = content.into();
    let path: Arc<Path> = display.into();
    if let Some(c) = cache
        && file_unchanged(&entry.open_path, &stamp)
    {
        c.new.insert(
            name.into(),
            Cached {
                stamp,
                path: path.clone(),
                content: content.clone(),
                sha256: sha256.clone(),
                link: entry.is_link,
                settled: stamp.settled(c.read_at),
            },
        );
    }
    Read1::File(SourceFile { path, content, sha256 })
}

/// The entry as the read cache has it, when nothing can have changed: no
/// event named it since a read that cached it, or a regular file whose
/// metadata is as a settled read found it.
fn cached_entry(
    name: &str,
    display: &mut PathBuf,
    limits: &Limits,
    cache: Option<&mut CacheIo>,
    trusted: bool,
) -> Option<SourceFile> {
    let c = cache?;
    if trusted && let Some(file) = c.take_trusted(name, display) {
        return Some(file);
    }
    let d = c.dir.as_ref()?;
    let st = nix::sys::stat::fstatat(d, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG || (st.st_size.max(0) as u64) > limits.max_file_bytes {
        return None;
    }
    let file = c.take(name, &Stamp::of_stat(&st), display)?;
    c.newest = c.newest.max(Stamp::of_stat(&st).changed());
    Some(file)
}

/// A directory entry to read: where to open it, and what it is.
struct Found {
    open_path: PathBuf,
    meta: fs::Metadata,
    is_link: bool,
}

/// Resolve `path`: a symlink must stay inside the source root; a directory
/// is skipped; anything but a regular file within `max_file_bytes` is
/// refused.
fn resolve(path: &Path, root_canon: &Path, limits: &Limits) -> Result<Found, Read1> {
    let lmeta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(Read1::Vanished),
        Err(e) => return Err(Read1::Refused(format!("cannot stat: {}", io_reason(&e)))),
    };
    let is_link = lmeta.file_type().is_symlink();
    let (open_path, meta) = if is_link {
        let canon = match fs::canonicalize(path) {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Read1::Refused("dangling symlink".into())),
            Err(e) => return Err(Read1::Refused(format!("cannot resolve symlink: {}", io_reason(&e)))),
        };
        if !canon.starts_with(root_canon) {
            return Err(Read1::Refused(format!(
                "symlink leaves the source root (points to {})",
                canon.display()
            )));
        }
        match fs::metadata(&canon) {
            Ok(m) => (canon, m),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Read1::Vanished),
            Err(e) => return Err(Read1::Refused(format!("cannot stat: {}", io_reason(&e)))),
        }
    } else {
        (path.to_owned(), lmeta)
    };
    if meta.is_dir() {
        return Err(Read1::Skip);
    }
    if !meta.is_file() {
        return Err(Read1::Refused("not a regular file".into()));
    }
    if meta.len() > limits.max_file_bytes {
        return Err(Read1::Refused(format!(
            "{} bytes is over the limit of {} bytes (max_file_bytes)",
            meta.len(),
            limits.max_file_bytes
        )));
    }
    Ok(Found {
        open_path,
        meta,
        is_link,
    })
}

/// Read a resolved entry within `max_file_bytes`, as UTF-8 text without a
/// byte-order mark or NUL: the text and its SHA-256.
fn read_text(entry: &Found, limits: &Limits) -> Result<(String, String), Read1> {
    // O_NONBLOCK so that a file swapped for a FIFO between stat and open cannot block us.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(&entry.open_path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(Read1::Vanished),
        Err(e) => return Err(Read1::Refused(format!("cannot open: {}", io_reason(&e)))),
    };
    let mut buf = Vec::with_capacity(entry.meta.len() as usize);
    if let Err(e) = file.take(limits.max_file_bytes + 1).read_to_end(&mut buf) {
        return Err(Read1::Refused(format!("cannot read: {}", io_reason(&e))));
    }
    if buf.len() as u64 > limits.max_file_bytes {
        return Err(Read1::Refused(format!(
            "grew past the limit of {} bytes (max_file_bytes) while read",
            limits.max_file_bytes
        )));
    }
    // A UTF-8 byte-order mark is not part of the text: the parser would
    // reject it as an unexpected character.
    let body = buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf);
    let sha256 = sha256_hex(body);
    let content = match std::str::from_utf8(body) {
        Ok(s) => s.to_owned(),
        Err(e) => {
            return Err(Read1::Undecodable(
                format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
                String::from_utf8_lossy(body).into_owned(),
            ));
        }
    };
    if let Some(pos) = content.find('\0') {
        return Err(Read1::Undecodable(
            format!("contains a NUL byte at offset {pos}"),
            content.replace('\0', " "),
        ));
    }
    Ok((content, sha256))
}

/// The file still has the metadata it had before the read (it was not
/// written while we read it).
pub(super) fn file_unchanged(path: &Path, before: &Stamp) -> bool {
    fs::metadata(path).map(|m| Stamp::of(&m) == *before).unwrap_or(false)
}

/// Put what a read of one entry found with the files or the refusals (the
/// entry named `path`); give back what is neither (a directory, an entry
/// gone).
fn file_or_refusal(
    read: Read1,
    path: impl FnOnce() -> PathBuf,
    files: &mut Vec<SourceFile>,
    refused: &mut Vec<Refusal>,
) -> Result<(), Read1> {
    match read {
        Read1::File(f) => files.push(f),
        Read1::Refused(reason) => refused.push(Refusal {
            path: path(),
            reason,
            text: None,
        }),
        Read1::Undecodable(reason, text) => refused.push(Refusal {
            path: path(),
            reason,
            text: Some(text),
        }),
        other => return Err(other),
    }
    Ok(())
}

/// The entry names of the source after the changes inotify named, from the
/// last read's listing: `None` when that cannot be told safely, and the
/// directory must be listed again.
fn listing_after(
    r: &Resolved,
    limits: &Limits,
    cache: &mut ReadCache,
    named: &BTreeSet<String>,
) -> Option<BTreeSet<String>> {
    // Taken: a read that cannot use it lists the directory anew.
    let mut names = cache.listing.take()?;
    if cache.dir != r.dir {
        return None;
    }
    for name in named {
        match fs::symlink_metadata(r.read_dir.join(name)) {
            Ok(_) => names.insert(name.clone()),
            Err(e) if e.kind() == ErrorKind::NotFound => names.remove(name),
            Err(_) => return None,
        };
    }
    // With at most `max_files` entries every file is admitted, by name as
    // by a full read; past it, only a full read knows which are refused.
    // (`>=` before the names were applied made a source of exactly
    // `max_profiles` files, the advertised limit, read in full at every
    // change.)
    (names.len() <= limits.max_files).then_some(names)
}

/// Read every file of a resolved source. `None` when the directory vanished
/// (the revision was swapped out while we read). With `named` (the names
/// inotify reported since the last read of this plain directory), only
/// those are looked at again, and every other file is taken from the cache
/// as it was; what the cache does not hold, or holds from a symlink, is
/// read as always.
pub(super) fn read_dir_once(
    cfg: &SourceConfig,
    r: &Resolved,
    limits: &Limits,
    cache: &mut ReadCache,
    named: Option<&BTreeSet<String>>,
) -> Result<Option<SourceSnapshot>, Unavailable> {
    let plain = r.layout == Layout::Plain && r.link.is_none() && r.revision.is_none();
    let by_name = named
        .filter(|_| plain)
        .and_then(|named| Some((listing_after(r, limits, cache, named)?, named)));
    let (names, fresh) = match by_name {
        Some((names, named)) => {
            log::debug!(
                "{}: reading {} reported names, {} other files as last read",
                crate::escape::path(&r.display_dir),
                named.len(),
                names.len().saturating_sub(named.len())
            );
            (names, Some(named))
        }
        None => {
            let entries = match fs::read_dir(&r.read_dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound && r.link.is_some() => return Ok(None),
                Err(e) => return Err(unavailable(&r.display_dir, io_reason(&e))),
            };
            let mut names = BTreeSet::new();
            for entry in entries {
                match entry {
                    Ok(e) => match e.file_name().into_string() {
                        Ok(n) => names.insert(n),
                        Err(raw) => names.insert(raw.to_string_lossy().into_owned() + "\u{0}"),
                    },
                    Err(e) if e.kind() == ErrorKind::NotFound && r.link.is_some() => return Ok(None),
                    Err(e) => return Err(unavailable(&r.display_dir, io_reason(&e))),
                };
            }
            (names, None)
        }
    };
    let snap = read_names(cfg, r, limits, cache, &names, fresh);
    // The listing a later read by name starts from: only a plain
    // directory's, and only of a read that completed.
    cache.listing = (plain && matches!(snap, Ok(Some(_)))).then_some(names);
    cache.untrusted = match &cache.listing {
        Some(names) => names.iter().filter(|n| cache.needs_look(n)).cloned().collect(),
        None => BTreeSet::new(),
    };
    snap
}

/// Read the entries `names` (sorted) of a resolved source. With `fresh`
/// (the names inotify reported), every other name the cache holds (not
/// through a symlink) is taken as it was, without a look; without it,
/// every entry is looked at.
fn read_names(
    cfg: &SourceConfig,
    r: &Resolved,
    limits: &Limits,
    cache: &mut ReadCache,
    names: &BTreeSet<String>,
    fresh: Option<&BTreeSet<String>>,
) -> Result<Option<SourceSnapshot>, Unavailable> {
    let root_canon = fs::canonicalize(&r.root).map_err(|e| unavailable(&r.root, io_reason(&e)))?;
    let mut snap = SourceSnapshot {
        source: cfg.path.clone(),
        layout: r.layout,
        revision: r.revision.clone(),
        files: Vec::new(),
        refused: Vec::new(),
        newest_change: Duration::ZERO,
        manifest: None,
        signature: None,
    };
    let old = if cache.dir == r.dir {
        std::mem::take(&mut cache.files)
    } else {
        HashMap::new()
    };
    let mut io = CacheIo {
        dir: (!old.is_empty()).then(|| fs::File::open(&r.read_dir).ok()).flatten(),
        new: HashMap::with_capacity(old.len()),
        old,
        read_at: now_since_epoch() + cache.skew,
        newest: Duration::ZERO,
    };
    for name in names {
        let name = name.as_str();
        if let Some(lossy) = name.strip_suffix('\u{0}') {
            snap.refused.push(Refusal {
                path: r.display_dir.join(lossy),
                reason: "file name is not UTF-8".into(),
                text: None,
            });
            continue;
        }
        if name == MANIFEST || name == SIGNATURE {
            let read = match read_entry(
                &r.read_dir,
                &root_canon,
                name,
                r.display_dir.join(name),
                limits,
                None,
                false,
            ) {
                Read1::File(f) => Ok(f.content.to_string()),
                Read1::Refused(why) | Read1::Undecodable(why, _) => Err(why),
                Read1::Skip => Err("is a directory".into()),
                Read1::Vanished if r.link.is_some() => return Ok(None),
                Read1::Vanished => continue,
            };
            if name == MANIFEST {
                snap.manifest = Some(read);
            } else {
                snap.signature = Some(read);
            }
            continue;
        }
        if skipped_name(name) {
            continue;
        }
        let display = r.display_dir.join(name);
        // Past the limit, files are refused by name without being read.
        if snap.files.len() >= limits.max_files {
            match fs::symlink_metadata(r.read_dir.join(name)) {
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
        let trusted = fresh.is_some_and(|f| !f.contains(name));
        let read = read_entry(&r.read_dir, &root_canon, name, display, limits, Some(&mut io), trusted);
        match file_or_refusal(read, || r.display_dir.join(name), &mut snap.files, &mut snap.refused) {
            Err(Read1::Vanished) if r.link.is_some() => return Ok(None),
            // A directory; in a plain source, a file removed while we read
            // is simply gone.
            _ => {}
        }
    }
    cache.dir = r.dir.clone();
    cache.files = io.new;
    // Stat the directories after the read: a rename that raced the read
    // shows in their change times.
    let mut newest = io.newest.max(ctime_of(&r.read_dir)).max(ctime_of(&r.root));
    if let Some(link) = &r.link {
        newest = newest.max(ctime_of(link));
    }
    snap.newest_change = newest;
    Ok(Some(snap))
}

/// What a look at some entries of a plain source found, against its last
/// complete read (see [`super::snapshot_delta`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Every entry looked at again, as the operator names it: what the
    /// last read held under these paths is replaced by `files` and
    /// `refused` (an entry in neither is gone).
    pub looked: Vec<PathBuf>,
    pub files: Vec<SourceFile>,
    pub refused: Vec<Refusal>,
    /// As [`SourceSnapshot::newest_change`], over what was looked at.
    pub newest_change: Duration,
}

/// Look again at the entries of a plain source that a read by name would
/// look at: those in `named`, those read through a symlink, and those the
/// cache does not hold (refused, or changed while read). `None` when the
/// read cannot be told from the last one (see `listing_after`), or when
/// `named` holds the signed manifest or its signature.
pub(super) fn read_delta(
    r: &Resolved,
    limits: &Limits,
    cache: &mut ReadCache,
    named: &BTreeSet<String>,
) -> Option<Delta> {
    let plain = r.layout == Layout::Plain && r.link.is_none() && r.revision.is_none();
    if !plain || named.contains(MANIFEST) || named.contains(SIGNATURE) {
        return None;
    }
    let root_canon = fs::canonicalize(&r.root).ok()?;
    let listing = listing_after(r, limits, cache, named)?;
    let look: BTreeSet<String> = named
        .iter()
        .filter(|n| !skipped_name(n))
        .chain(&cache.untrusted)
        .cloned()
        .collect();
    let old: HashMap<Box<str>, Cached> = look
        .iter()
        .filter_map(|n| cache.files.remove_entry(n.as_str()))
        .collect();
    let mut io = CacheIo {
        dir: (!old.is_empty()).then(|| fs::File::open(&r.read_dir).ok()).flatten(),
        new: HashMap::new(),
        old,
        read_at: now_since_epoch() + cache.skew,
        newest: Duration::ZERO,
    };
    log::debug!(
        "{}: reading {} reported names, {} other files as the last reconcile left them",
        crate::escape::path(&r.display_dir),
        look.len(),
        listing.len().saturating_sub(look.len())
    );
    let mut delta = Delta::default();
    for name in &look {
        if let Some(lossy) = name.strip_suffix('\u{0}') {
            delta.looked.push(r.display_dir.join(lossy));
            delta.refused.push(Refusal {
                path: r.display_dir.join(lossy),
                reason: "file name is not UTF-8".into(),
                text: None,
            });
            continue;
        }
        let display = r.display_dir.join(name);
        delta.looked.push(display.clone());
        if !listing.contains(name) {
            continue;
        }
        let read = read_entry(&r.read_dir, &root_canon, name, display, limits, Some(&mut io), false);
        // A directory, or a file removed while we looked: no file.
        let _ = file_or_refusal(read, || r.display_dir.join(name), &mut delta.files, &mut delta.refused);
    }
    cache.files.extend(io.new);
    for name in &look {
        cache.untrusted.remove(name);
        if listing.contains(name) && cache.needs_look(name) {
            cache.untrusted.insert(name.clone());
        }
    }
    cache.listing = Some(listing);
    delta.newest_change = io.newest.max(ctime_of(&r.read_dir)).max(ctime_of(&r.root));
    Some(delta)
}
