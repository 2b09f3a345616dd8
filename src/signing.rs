//! Signed policy: a revision's `armord.manifest` lists every file with its
//! sha256, a serial and an optional expiry, and `armord.manifest.sig` is its
//! detached SSH signature in the `ssh-keygen -Y sign -n armord` format. The
//! cryptography is the `ssh-key` crate's; this module decides what a
//! signature means for a revision.

use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::source::{MANIFEST, SIGNATURE};
/// The `-n` namespace of `ssh-keygen -Y sign`.
pub const NAMESPACE: &str = "armord";

/// The signed manifest of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Never goes backwards for a source: a lower one is a rollback.
    pub serial: u64,
    /// Seconds since the epoch after which the revision is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// File name → sha256 (hex) of its content.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("{MANIFEST} is missing")]
    NoManifest,
    #[error("{SIGNATURE} is missing")]
    NoSignature,
    #[error("{0}: {1}")]
    Unreadable(&'static str, String),
    #[error("{SIGNATURE} is not an SSH signature: {0}")]
    BadSignatureFile(String),
    #[error("{SIGNATURE} is for namespace `{0}`, not `{NAMESPACE}`")]
    Namespace(String),
    #[error("{SIGNATURE} was made by an unknown key ({0}); it is not in trusted_keys")]
    UnknownKey(String),
    #[error("bad signature: {SIGNATURE} does not verify over {MANIFEST}")]
    BadSignature,
    #[error("{MANIFEST} is not a valid manifest: {0}")]
    BadManifest(String),
    #[error("expired at {at} (seconds since the epoch)")]
    Expired { at: u64 },
    #[error("rollback from serial {from} to {to}")]
    Rollback { from: u64, to: u64 },
    #[error(
        "the serial of the last revision applied from this source is unknown (its record was lost or damaged), so this revision, which changes the loaded profiles, could be a rollback: it is held; if it is the right one, run `armorctl sync --accept-signed-serial` (or `armord --once --accept-signed-serial`)"
    )]
    FloorUnknown,
    #[error("hash mismatch: {0} differs from the signed sha256")]
    HashMismatch(String),
    #[error("{0} is listed in {MANIFEST} but missing")]
    MissingFile(String),
    #[error("no trusted key: trusted_keys names none that could be read")]
    NoTrustedKeys,
    #[error("{path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Does `name` match a glob of `*` and `?` (no `/` in either)?
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The public keys `trusted_keys` names: paths, or globs in their last
/// component (`/etc/armord/trusted-keys.d/*.pub`). A key file that cannot
/// be read is an error with its path; an empty glob is not.
pub fn trusted_keys(entries: &[String]) -> (Vec<PublicKey>, Vec<SignError>) {
    let (mut keys, mut errors) = (Vec::new(), Vec::new());
    for e in entries {
        let p = Path::new(e);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let paths: Vec<PathBuf> = if name.contains(['*', '?']) {
            let dir = p.parent().unwrap_or(Path::new("/"));
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|d| d.path())
                        .filter(|f| f.file_name().is_some_and(|n| glob_match(&name, &n.to_string_lossy())))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            found
        } else {
            vec![p.to_owned()]
        };
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => match PublicKey::from_openssh(text.trim()) {
                    Ok(k) => keys.push(k),
                    Err(err) => errors.push(SignError::Key {
                        path,
                        reason: format!("not an OpenSSH public key: {err}"),
                    }),
                },
                Err(err) => errors.push(SignError::Key {
                    path,
                    reason: err.to_string(),
                }),
            }
        }
    }
    (keys, errors)
}

/// Verify a manifest's signature against the trusted keys and parse it.
pub fn verify(manifest: &str, signature: &str, keys: &[PublicKey]) -> Result<Manifest, SignError> {
    let sig = SshSig::from_pem(signature.trim().as_bytes()).map_err(|e| SignError::BadSignatureFile(e.to_string()))?;
    if sig.namespace() != NAMESPACE {
        return Err(SignError::Namespace(sig.namespace().to_owned()));
    }
    let key = keys.iter().find(|k| k.key_data() == sig.public_key()).ok_or_else(|| {
        SignError::UnknownKey(
            PublicKey::from(sig.public_key().clone())
                .fingerprint(HashAlg::Sha256)
                .to_string(),
        )
    })?;
    key.verify(NAMESPACE, manifest.as_bytes(), &sig)
        .map_err(|_| SignError::BadSignature)?;
    toml::from_str(manifest).map_err(|e| SignError::BadManifest(e.message().to_owned()))
}

/// What a verified manifest says of a revision's files (name → sha256):
/// every listed file is there with its hash; the names it does not list
/// are returned (unsigned). Expiry and rollback are checked too.
pub fn check(
    m: &Manifest,
    files: &BTreeMap<String, String>,
    last_serial: Option<u64>,
    now: u64,
) -> Result<Vec<String>, SignError> {
    if let Some(at) = m.expires
        && now > at
    {
        return Err(SignError::Expired { at });
    }
    if let Some(from) = last_serial
        && m.serial < from
    {
        return Err(SignError::Rollback { from, to: m.serial });
    }
    for (name, sha) in &m.files {
        match files.get(name) {
            None => return Err(SignError::MissingFile(crate::escape::text(name).into_owned())),
            Some(got) if !got.eq_ignore_ascii_case(sha) => {
                return Err(SignError::HashMismatch(crate::escape::text(name).into_owned()));
            }
            Some(_) => {}
        }
    }
    Ok(files.keys().filter(|n| !m.files.contains_key(*n)).cloned().collect())
}

/// The files of a revision directory as a source reads them (its skip and
/// encoding rules, a byte-order mark dropped): name → sha256. The manifest
/// and its signature are not among them.
pub fn revision_files(dir: &Path, max_file_bytes: u64) -> Result<BTreeMap<String, String>, SignError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| SignError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let limits = crate::source::Limits::each_file(max_file_bytes);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, &e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut files = BTreeMap::new();
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if crate::source::skipped_name(&name) || name == MANIFEST || name == SIGNATURE || path.is_dir() {
            continue;
        }
        let f = crate::source::read_one(&path, &limits).map_err(|e| io(&path, &e))?;
        files.insert(name, f.sha256.into());
    }
    Ok(files)
}

/// Write `DIR/armord.manifest` over the files of `dir` (the names a source
/// would read, with its rules) and sign it with `key` into
/// `DIR/armord.manifest.sig`.
pub fn sign_dir(dir: &Path, key: &Path, serial: u64, expires: Option<u64>) -> Result<Manifest, SignError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| SignError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let pem = std::fs::read_to_string(key).map_err(|e| io(key, &e))?;
    let private = PrivateKey::from_openssh(pem.trim()).map_err(|e| SignError::Key {
        path: key.to_owned(),
        reason: format!("not an unencrypted OpenSSH private key: {e}"),
    })?;
    let files = revision_files(dir, 1 << 30)?;
    let m = Manifest { serial, expires, files };
    let text = toml::to_string(&m).map_err(|e| io(dir, &e))?;
    let text = format!("# Signed with `armorctl sign`; verify with `armorctl verify`.\n{text}");
    let sig = private
        .sign(NAMESPACE, HashAlg::Sha512, text.as_bytes())
        .map_err(|e| io(key, &e))?;
    let pem = sig.to_pem(LineEnding::LF).map_err(|e| io(key, &e))?;
    let mpath = dir.join(MANIFEST);
    crate::state::atomic_write(&mpath, text.as_bytes()).map_err(|e| io(&mpath, &e))?;
    let spath = dir.join(SIGNATURE);
    crate::state::atomic_write(&spath, pem.as_bytes()).map_err(|e| io(&spath, &e))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.pub", "ci.pub"));
        assert!(glob_match("k?.pub", "k1.pub"));
        assert!(!glob_match("*.pub", "ci.pub.bak"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn check_rules() {
        let m = Manifest {
            serial: 5,
            expires: Some(100),
            files: [("a".to_string(), "AA".to_string())].into(),
        };
        let files: BTreeMap<String, String> = [("a".into(), "aa".into()), ("b".into(), "bb".into())].into();
        assert_eq!(check(&m, &files, Some(5), 50), Ok(vec!["b".to_string()]));
        assert_eq!(
            check(&m, &files, Some(6), 50),
            Err(SignError::Rollback { from: 6, to: 5 })
        );
        assert_eq!(check(&m, &files, None, 101), Err(SignError::Expired { at: 100 }));
        let other: BTreeMap<String, String> = [("a".into(), "ab".into())].into();
        assert!(matches!(check(&m, &other, None, 0), Err(SignError::HashMismatch(_))));
        assert!(matches!(
            check(&m, &BTreeMap::new(), None, 0),
            Err(SignError::MissingFile(_))
        ));
    }
}
