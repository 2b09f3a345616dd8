//! A fast hasher for the plan's sets of names and paths: FxHash's
//! add-and-multiply over eight bytes at a time. Names and paths come from
//! the node's own sources and kernel, so the flooding that the standard
//! SipHash guards against is not in play; SipHash was a fifth of a plan's
//! time over a thousand profiles.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fx(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits: bring the
        // multiply's well-mixed high bits down.
        self.0.rotate_left(26)
    }
}

pub(super) type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fx>>;
pub(super) type FxSet<K> = std::collections::HashSet<K, BuildHasherDefault<Fx>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash(v: impl Hash) -> u64 {
        BuildHasherDefault::<Fx>::default().hash_one(v)
    }

    #[test]
    fn names_that_differ_hash_apart_and_equal_names_alike() {
        let names: Vec<String> = (0..5000).map(|i| format!("custom.p{i:04}")).collect();
        let hashes: std::collections::HashSet<u64> = names.iter().map(hash).collect();
        assert_eq!(hashes.len(), names.len());
        assert_eq!(hash("custom.a"), hash(String::from("custom.a")));
        // A tail shorter than a word is not its zero-padded self.
        assert_ne!(hash(b"ab".as_slice()), hash(b"ab\0".as_slice()));
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m: FxMap<&str, usize> = FxMap::default();
        for (i, n) in ["a", "b", "custom.long.name.over.eight"].iter().enumerate() {
            m.insert(n, i);
        }
        assert_eq!(m.get("custom.long.name.over.eight"), Some(&2));
        assert_eq!(m.get("c"), None);
    }
}
