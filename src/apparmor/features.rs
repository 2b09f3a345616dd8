//! AppArmor's feature names, as a features file writes them (`name {…}`
//! nested) and as the kernel lists them (its securityfs directory), down to
//! a depth: what `armorctl doctor` compares and the lint reads.

use std::collections::BTreeSet;
use std::path::Path;

/// The feature names of a features file (`name {…}` nested) down to
/// `depth` levels, as `a` and `a/b`.
pub fn file_features(text: &str, depth: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '{' => {
                let name = word.trim().to_owned();
                word.clear();
                stack.push(name);
                if stack.len() <= depth && stack.iter().all(|s| !s.is_empty()) {
                    out.insert(stack.join("/"));
                }
            }
            '}' => {
                stack.pop();
                word.clear();
            }
            '\n' => word.clear(),
            c => word.push(c),
        }
    }
    out
}

/// The kernel's features (its securityfs directory) down to `depth`.
pub fn kernel_features(dir: &Path, depth: usize) -> BTreeSet<String> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            out.insert(key.clone());
            if depth > 1 && e.path().is_dir() {
                walk(&e.path(), &key, depth - 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, "", depth, &mut out);
    out
}
