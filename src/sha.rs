//! A content's sha256, as the 64 hex digits armord names it by (its store
//! key, the manifest's and the follower's version), held once however
//! many places name it: the read cache, the plan, the manifest, the
//! follower's versions and the published rows all share one copy. At
//! 10,000 profiles each copy as its own string was about 0.9 MB.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A sha256 in hex; empty where none is known. Cloning it shares it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha(Arc<str>);

impl Sha {
    /// The sha256 of `data`.
    pub fn of(data: &[u8]) -> Sha {
        Sha::from(crate::source::sha256_hex(data).as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Sha {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Sha {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Sha {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for Sha {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&*self.0)
    }
}

impl From<&str> for Sha {
    fn from(s: &str) -> Sha {
        Sha(Arc::from(s))
    }
}

impl From<String> for Sha {
    fn from(s: String) -> Sha {
        Sha(Arc::from(s))
    }
}

impl From<&String> for Sha {
    fn from(s: &String) -> Sha {
        Sha(Arc::from(s.as_str()))
    }
}

impl From<Sha> for String {
    fn from(s: Sha) -> String {
        s.0.to_string()
    }
}

impl PartialEq<str> for Sha {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Sha {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Sha {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Sha> for str {
    fn eq(&self, other: &Sha) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Sha> for &str {
    fn eq(&self, other: &Sha) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Sha> for String {
    fn eq(&self, other: &Sha) -> bool {
        **self == *other.0
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Sha {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sha, D::Error> {
        String::deserialize(d).map(Sha::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_the_digits_and_compares_as_text() {
        let a = Sha::of(b"profile x {}\n");
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.len(), 64);
        assert_eq!(a, crate::source::sha256_hex(b"profile x {}\n"));
        assert_eq!(a, *crate::source::sha256_hex(b"profile x {}\n").as_str());
        assert_ne!(a, Sha::of(b"other"));
        assert!(Sha::default().is_empty());
        // Written and read as the plain string it was before.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<Sha>(&json).unwrap(), a);
        assert_eq!(format!("{a:?}"), format!("{:?}", a.to_string()));
        // Looked up by its text in a map keyed by it.
        let m: std::collections::HashMap<Sha, u8> = [(a.clone(), 1)].into();
        assert_eq!(m.get(a.as_str()), Some(&1));
    }
}
