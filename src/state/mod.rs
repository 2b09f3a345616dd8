//! Everything armord keeps between runs, in its state directory: the
//! ownership manifest and its pending-load log (`manifest`), the store of
//! last-good copies (`store`), the legacy record of signed serials
//! (`serials`), the name of every state file and the directory's own
//! checks (`dir`), and the atomic writes they all use (`write`).
//!
//! A state file that cannot be loaded is set aside (`NAME.corrupt`) by the
//! one who owns it, with a logged line naming the file and the cause: see
//! [`set_aside`].

mod dir;
mod manifest;
mod serials;
mod store;
mod write;

pub use dir::{StateDir, set_aside, writable_by_others};
pub use manifest::{Loaded, MANIFEST_VERSION, Manifest, Owned, PendingLoad};
pub use serials::Serials;
pub use write::{atomic_write, atomic_write_readable, create_temp, private_temp_dir};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The manifest or its pending-load log.
    #[error("{path}: corrupt manifest: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Another state file (`what` it is) whose content cannot be used.
    #[error("{path}: damaged {what}: {reason}")]
    Damaged {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
}

impl StateError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            StateError::Io { path, .. } | StateError::Corrupt { path, .. } | StateError::Damaged { path, .. } => path,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}
