//! Layout detection: plain, ConfigMap volume, git-sync; the link resolved once.

use super::*;

/// Read a symlink and return its target joined onto the link's directory.
pub(super) fn link_target(link: &Path) -> std::io::Result<PathBuf> {
    let target = fs::read_link(link)?;
    Ok(match link.parent() {
        Some(parent) if target.is_relative() => parent.join(target),
        _ => target,
    })
}

/// Is `target` (a link target) inside `dir/.worktrees/`, as git-sync writes it?
pub(super) fn worktree_of(root: &Path, target: &Path) -> Option<PathBuf> {
    let rel = target.strip_prefix(root).ok()?;
    let mut comps = rel.components();
    match (comps.next(), comps.next(), comps.next()) {
        (Some(Component::Normal(w)), Some(Component::Normal(_)), None) if w == ".worktrees" => Some(rel.to_owned()),
        _ => None,
    }
}

pub(super) fn find_git_sync_link(root: &Path, wanted: Option<&str>) -> std::io::Result<Option<(PathBuf, PathBuf)>> {
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
pub(super) fn normalize(p: &Path) -> PathBuf {
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
            return finish(
                cfg,
                Layout::GitSync,
                parent.to_owned(),
                Some(path.to_owned()),
                Some(rev),
                path.to_owned(),
            );
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
        Layout::Plain => finish(cfg, layout, path.clone(), None, None, path.clone()),
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
            finish(cfg, layout, path.clone(), Some(data_link), Some(rev), path.clone())
        }
        Layout::GitSync => match find_git_sync_link(path, cfg.link.as_deref()) {
            Ok(Some((link, rev))) => {
                let display = link.clone();
                finish(cfg, layout, path.clone(), Some(link), Some(rev), display)
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

pub(super) fn finish(
    cfg: &SourceConfig,
    layout: Layout,
    root: PathBuf,
    link: Option<PathBuf>,
    revision: Option<PathBuf>,
    display: PathBuf,
) -> Result<Resolved, Unavailable> {
    let mut dir = match &revision {
        Some(rev) => root.join(rev),
        None => root.clone(),
    };
    let mut display_dir = display;
    let mut beneath: Vec<PathBuf> = revision.iter().cloned().collect();
    if let Some(sub) = &cfg.subdir {
        dir.push(sub);
        display_dir.push(sub);
        beneath.push(PathBuf::from(sub));
    }
    let (read_dir, held) = open_beneath(&root, &beneath).map_err(|why| unavailable(&dir, why))?;
    Ok(Resolved {
        layout,
        root,
        link,
        revision,
        dir,
        display_dir,
        read_dir,
        held,
    })
}

/// Open `root/rel…` one real directory at a time (never through a
/// symlink, never `..`), and name it as `/proc/self/fd/N` for the reads:
/// a revision directory or subdirectory that is a symlink, or is swapped
/// for one while it is read, is never followed out of the source.
fn open_beneath(root: &Path, rel: &[PathBuf]) -> Result<(PathBuf, HeldDir), String> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let mut fd = open(root, flags, Mode::empty()).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    for part in rel {
        for c in part.components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => return Err(format!("{} leaves the source", part.display())),
            };
            fd = openat(&fd, name, flags | OFlag::O_NOFOLLOW, Mode::empty()).map_err(|e| match e {
                nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => format!(
                    "{} is a symlink or not a directory: a revision directory must be a real directory inside the source",
                    Path::new(name).display()
                ),
                e => format!("cannot open {}: {e}", Path::new(name).display()),
            })?;
        }
    }
    let via_proc = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
    if via_proc.is_dir() {
        Ok((via_proc, HeldDir(Some(std::sync::Arc::new(fd)))))
    } else {
        // No /proc: the path, checked above.
        Ok((root.join(rel.iter().collect::<PathBuf>()), HeldDir(None)))
    }
}

/// When a source's `path` is reached through a link that a ConfigMap
/// (`..data`) or git-sync (a link into `.worktrees/`) swaps, armord reads
/// the revision it resolves to once and never sees the swap: the
/// configuration that follows the swaps instead, as `path`, `link` and
/// `subdir` lines.
pub fn swapping_link_advice(cfg: &SourceConfig) -> Option<String> {
    let mut prefix = PathBuf::new();
    let comps: Vec<Component> = cfg.path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        prefix.push(c);
        let Ok(meta) = fs::symlink_metadata(&prefix) else {
            return None;
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let parent = prefix.parent()?.to_owned();
        let name = prefix.file_name()?.to_string_lossy().into_owned();
        let rest: PathBuf = comps[i + 1..].iter().collect();
        let sub = |rest: &Path| {
            let mut sub = rest.to_path_buf();
            if let Some(s) = &cfg.subdir {
                sub.push(s);
            }
            if sub.as_os_str().is_empty() {
                String::new()
            } else {
                format!(", subdir = \"{}\"", sub.display())
            }
        };
        if name == "..data" {
            return Some(format!(
                "source {} is read through the ConfigMap link {}, which an update swaps: armord would keep reading the old revision. Configure instead: path = \"{}\"{}",
                crate::escape::path(&cfg.path),
                crate::escape::path(&prefix),
                parent.display(),
                sub(&rest)
            ));
        }
        let target = link_target(&prefix).ok()?;
        // The path may be git-sync's link itself: that one is followed.
        if i + 1 < comps.len() && worktree_of(&parent, &normalize(&target)).is_some() {
            return Some(format!(
                "source {} is read through the git-sync link {}, which each sync swaps: armord would keep reading the old worktree. Configure instead: path = \"{}\", link = \"{name}\"{}",
                crate::escape::path(&cfg.path),
                crate::escape::path(&prefix),
                parent.display(),
                sub(&rest)
            ));
        }
    }
    None
}
