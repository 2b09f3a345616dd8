//! Merging configuration files at the raw level, each key keeping where it
//! was set.
//!
//! Every key of a raw shape is an [`Origin`]: its value, its name as
//! written (`parser.timeout_secs`), and the file and line that set it. A
//! raw shape is declared with [`table!`], which gives it [`Layer`]: `place`
//! marks every key a file sets with that file, and `layer` takes in a later
//! file, field by field: a key set there wins, `[[source]]` tables
//! accumulate. Adding a key to a table is one line in its raw shape.

use super::ConfigError;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A configuration file as keys remember it.
#[derive(Debug, Default)]
pub(super) struct ConfigFile {
    /// The file as named (in messages).
    pub(super) path: PathBuf,
    /// Its directory as it really is, so that `..` means that directory's
    /// parent; `None` for a name without one (nothing is resolved).
    pub(super) dir: Option<PathBuf>,
}

impl ConfigFile {
    pub(super) fn new(path: &Path) -> Self {
        ConfigFile {
            path: path.to_owned(),
            dir: path
                .parent()
                .map(|dir| std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())),
        }
    }
}

/// A file being placed: which one, and its text (for line numbers).
pub(super) struct Place<'a> {
    pub(super) file: Arc<ConfigFile>,
    pub(super) text: &'a str,
}

/// The line (from 1) of byte `offset` of `text`.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A key that was set: its value, its name, and the file and line that set it.
#[derive(Debug)]
pub(super) struct Origin<T> {
    pub(super) value: T,
    /// The key as written in TOML, with its table (`parser.timeout_secs`).
    pub(super) key: String,
    pub(super) file: Arc<ConfigFile>,
    pub(super) line: usize,
    /// Where the value starts in its file's text, until it is placed.
    offset: usize,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Origin<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(d)?;
        Ok(Origin {
            offset: spanned.span().start,
            value: spanned.into_inner(),
            key: String::new(),
            file: Arc::default(),
            line: 0,
        })
    }
}

impl<T> Origin<T> {
    /// This key's value refused, for `reason`.
    pub(super) fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.path.clone(),
            line: self.line,
            key: self.key.clone(),
            reason: reason.into(),
        }
    }

    /// The key and where it was set, for an error about more than one key.
    pub(super) fn key_at(&self) -> super::KeyAt {
        super::KeyAt {
            key: self.key.clone(),
            set_at: Some((self.file.path.clone(), self.line)),
        }
    }
}

/// The configuration as files set it, merged in order.
pub(super) trait Layer {
    /// Mark every key in `self` as set at `place`; `key` is the table's
    /// own name (empty at the top level).
    fn place(&mut self, place: &Place<'_>, key: &str);
    /// Take in `later`, read from a file after the ones `self` holds.
    fn layer(&mut self, later: Self);
}

/// `table.key`, or `key` at the top level.
pub(super) fn subkey(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

impl<T> Layer for Origin<T> {
    fn place(&mut self, place: &Place<'_>, key: &str) {
        self.key = key.to_owned();
        self.file = place.file.clone();
        self.line = line_at(place.text, self.offset);
    }
    fn layer(&mut self, later: Self) {
        *self = later;
    }
}

/// A key a later file sets wins; one it leaves out keeps its value.
impl<L: Layer> Layer for Option<L> {
    fn place(&mut self, place: &Place<'_>, key: &str) {
        if let Some(v) = self {
            v.place(place, key);
        }
    }
    fn layer(&mut self, later: Self) {
        if later.is_some() {
            *self = later;
        }
    }
}

/// An array of tables (`[[source]]`) accumulates across files.
impl<L: Layer> Layer for Vec<L> {
    fn place(&mut self, place: &Place<'_>, key: &str) {
        for v in self {
            v.place(place, key);
        }
    }
    fn layer(&mut self, later: Self) {
        self.extend(later);
    }
}

/// Declare a raw table: a struct deserialized from TOML (unknown keys
/// refused) whose fields are [`Origin`]s, options of them, vectors or
/// other tables, with [`Layer`] field by field.
macro_rules! table {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($(#[$field_meta])* pub(super) $field: $ty,)*
        }

        impl $crate::config::merge::Layer for $name {
            fn place(&mut self, place: &$crate::config::merge::Place<'_>, key: &str) {
                $($crate::config::merge::Layer::place(
                    &mut self.$field,
                    place,
                    &$crate::config::merge::subkey(key, stringify!($field)),
                );)*
            }
            fn layer(&mut self, later: Self) {
                $($crate::config::merge::Layer::layer(&mut self.$field, later.$field);)*
            }
        }
    };
}
pub(super) use table;

#[cfg(test)]
mod tests {
    use super::super::raw::{RawConfig, parse_str};
    use super::*;

    #[test]
    fn a_later_file_wins_key_by_key_and_keys_remember_their_line() {
        let mut merged = RawConfig::default();
        merged.layer(
            parse_str(
                Path::new("/a.toml"),
                "max_profiles = 5\n[parser]\njobs = 2\ntimeout_secs = 9\n",
            )
            .unwrap(),
        );
        merged.layer(parse_str(Path::new("/b.toml"), "\n[parser]\n\njobs = 3\n").unwrap());
        let jobs = merged.parser.jobs.as_ref().unwrap();
        assert_eq!((jobs.value, jobs.key.as_str(), jobs.line), (3, "parser.jobs", 4));
        assert_eq!(jobs.file.path, Path::new("/b.toml"));
        let timeout = merged.parser.timeout_secs.as_ref().unwrap();
        assert_eq!((timeout.value, timeout.line), (9, 4));
        assert_eq!(timeout.file.path, Path::new("/a.toml"));
        assert_eq!(merged.max_profiles.as_ref().map(|o| o.value), Some(5));
    }
}
