//! Writing files so that a reader, or a crash, sees the old content or the
//! new and never a mix, through temporaries no one else can plant or guess:
//! atomic writes (temp file, fsync, rename, fsync of the directory), new
//! temporary files and private temporary directories.

use super::{StateError, io_err};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Write `data` to `path` so that a reader (or a crash) sees the old content
/// or the new, never a mix: temp file in the same directory, fsync, rename,
/// fsync the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), StateError> {
    write_replace(path, data, true, None)
}

/// [`atomic_write`] of a file other programs read (an export for
/// node_exporter or node-feature-discovery): mode 0644 whatever the umask.
pub fn atomic_write_readable(path: &Path, data: &[u8]) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    write_replace_with(path, data, true, None, |f: &std::fs::File| {
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
    })
}

/// Like [`atomic_write`], with the fsyncs only when `durable`: readers see
/// the old content or the new, but a crash may lose the new. `midpoint` is
/// a failpoint passed with the data written and not yet renamed.
pub(super) fn write_replace(path: &Path, data: &[u8], durable: bool, midpoint: Option<&str>) -> Result<(), StateError> {
    write_replace_with(path, data, durable, midpoint, |_| Ok(()))
}

/// [`write_replace`], with `prepare` run on the new temporary before the
/// data is written (to set its mode).
fn write_replace_with(
    path: &Path,
    data: &[u8],
    durable: bool,
    midpoint: Option<&str>,
    prepare: impl Fn(&std::fs::File) -> std::io::Result<()>,
) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = dir.join(".tmp");
    let result = (|| {
        crate::failpoint::hit("state-write").map_err(io_err(path))?;
        let (made, mut f) = create_temp(path).map_err(io_err(path))?;
        tmp = made;
        prepare(&f).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        if let Some(point) = midpoint {
            crate::failpoint::hit(point).map_err(io_err(&tmp))?;
        }
        if durable {
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        if durable {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write `data` into the existing file `tmp`, then rename it to `path`
/// (not durable); `tmp` is gone either way. `midpoint` as for
/// [`write_replace`].
pub(super) fn write_into(tmp: &Path, path: &Path, data: &[u8], midpoint: Option<&str>) -> Result<(), StateError> {
    let result = (|| {
        crate::failpoint::hit("state-write").map_err(io_err(tmp))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(tmp)
            .map_err(io_err(tmp))?;
        f.write_all(data).map_err(io_err(tmp))?;
        if let Some(point) = midpoint {
            crate::failpoint::hit(point).map_err(io_err(tmp))?;
        }
        std::fs::rename(tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// A name no one can guess: the process and 64 random bits.
fn unpredictable() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState is seeded from the operating system's randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    format!("{}.{:016x}", std::process::id(), h.finish())
}

/// A new private directory (mode 0700) in the temporary directory, named
/// `PREFIX-PID.RANDOM` and made with a plain mkdir: a name another user
/// planted there (a symlink into root's files) is never used.
pub fn private_temp_dir(prefix: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!("{prefix}-{}", unpredictable()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name left")))
}

/// Create a new temporary file beside `path` that never existed before:
/// `.NAME.tmp.PID.RANDOM`, made with `O_CREAT | O_EXCL | O_NOFOLLOW`
/// (mode 0666 less the umask, as a plain create), so a symlink or file
/// planted at any name is never followed or reused.
pub fn create_temp(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(".{name}.tmp.{}", unpredictable()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name left")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_planted_at_a_temporary_or_the_target_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "root-only\n").unwrap();
        let out = d.path().join("armord.prom");
        // The name temporaries had before, and a symlink as the target.
        std::os::unix::fs::symlink(
            &victim,
            d.path().join(format!(".armord.prom.tmp.{}", std::process::id())),
        )
        .unwrap();
        atomic_write_readable(&out, b"metrics\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root-only\n");
        std::fs::remove_file(&out).unwrap();
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        atomic_write(&out, b"state\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root-only\n");
        assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "state\n");
        // Two temporaries for one file never share a name.
        let (a, _) = create_temp(&out).unwrap();
        let (b, _) = create_temp(&out).unwrap();
        assert_ne!(a, b);
        assert!(
            a.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".armord.prom.tmp.")
        );
    }

    #[test]
    fn private_temporary_directories_are_new_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let a = private_temp_dir("armord-test").unwrap();
        let b = private_temp_dir("armord-test").unwrap();
        assert_ne!(a, b);
        for d in [&a, &b] {
            let m = std::fs::symlink_metadata(d).unwrap();
            assert!(m.is_dir() && m.permissions().mode() & 0o777 == 0o700);
            std::fs::remove_dir(d).unwrap();
        }
    }
}
