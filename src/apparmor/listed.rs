//! The kernel's list of loaded profiles, kept while the policy revision
//! has not moved: a change's plan then reads the revision (a few bytes),
//! not the whole list (10,000 lines at 10,000 profiles, 0.8 ms to read and
//! parse on the path to the load).
//!
//! The revision is read before the list, so a list kept under a revision
//! is never older than it: a change after the revision's read moves it
//! again, and the next read misses. After its own loads armord reads the
//! list afresh ([`Listed::refresh`]), whatever the revision says, and
//! after its own removals it drops the kept list ([`Listed::forget`]): a
//! kernel moves its revision with each load and removal, but nothing here
//! relies on that for armord's own changes.
//!
//! The revision is the namespace's own: a change in a child namespace
//! (`:ns:name`, loaded by a container's own policy manager) does not move
//! it, so a kept list may show such names as they were. armord owns no
//! namespaced name (it refuses to define one), so none of its decisions
//! turns on them.

use super::{Kernel, KernelError, Mode};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A list of loaded profiles and their modes, shared.
pub type List = Arc<BTreeMap<String, Mode>>;

#[derive(Debug, Default)]
pub struct Listed {
    last: Mutex<Option<(u64, List)>>,
}

impl Listed {
    /// The list, from the last read when the revision is the one it was
    /// read under; otherwise read now. A kernel without a revision is
    /// read each time.
    pub fn read(&self, kernel: &dyn Kernel) -> Result<List, KernelError> {
        self.read_kept(kernel).map(|(_, list)| list)
    }

    /// The list as [`Listed::read`] gives it, with the revision it is
    /// kept under (`None`: the kernel has none).
    pub fn read_kept(&self, kernel: &dyn Kernel) -> Result<(Option<u64>, List), KernelError> {
        let rev = kernel.revision();
        if let Some(r) = rev
            && let Some((at, list)) = &*self.last.lock().unwrap_or_else(|p| p.into_inner())
            && *at == r
        {
            return Ok((rev, list.clone()));
        }
        self.read_under(kernel, rev).map(|list| (rev, list))
    }

    /// The list read now, and kept for the revision it was read under.
    pub fn refresh(&self, kernel: &dyn Kernel) -> Result<List, KernelError> {
        self.read_under(kernel, kernel.revision())
    }

    /// Drop the kept list: the next [`Listed::read`] reads the kernel.
    pub fn forget(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn read_under(&self, kernel: &dyn Kernel, rev: Option<u64>) -> Result<List, KernelError> {
        let list = Arc::new(kernel.loaded()?);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = rev.map(|r| (r, list.clone()));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// A kernel that counts its list reads.
    #[derive(Default)]
    struct Counting {
        rev: AtomicU64,
        reads: AtomicUsize,
        names: Mutex<Vec<String>>,
        has_revision: bool,
    }

    impl Kernel for Counting {
        fn loaded(&self) -> Result<BTreeMap<String, Mode>, KernelError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let names = self.names.lock().unwrap();
            Ok(names.iter().map(|n| (n.clone(), Mode::Enforce)).collect())
        }
        fn remove(&self, _: &str) -> Result<(), KernelError> {
            Ok(())
        }
        fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, KernelError> {
            Ok(BTreeMap::new())
        }
        fn revision(&self) -> Option<u64> {
            self.has_revision.then(|| self.rev.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn the_list_is_read_again_only_when_the_revision_moved() {
        let k = Counting {
            has_revision: true,
            ..Default::default()
        };
        let l = Listed::default();
        k.names.lock().unwrap().push("a".into());
        let first = l.read(&k).unwrap();
        let again = l.read(&k).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(k.reads.load(Ordering::SeqCst), 1);
        // A load moves the revision: read afresh.
        k.names.lock().unwrap().push("b".into());
        k.rev.fetch_add(1, Ordering::SeqCst);
        assert_eq!(l.read(&k).unwrap().len(), 2);
        assert_eq!(k.reads.load(Ordering::SeqCst), 2);
        // A refresh reads whatever the revision says, and is kept.
        k.names.lock().unwrap().push("c".into());
        let fresh = l.refresh(&k).unwrap();
        assert_eq!(fresh.len(), 3);
        assert!(Arc::ptr_eq(&fresh, &l.read(&k).unwrap()));
        assert_eq!(k.reads.load(Ordering::SeqCst), 3);
        // A removal the revision does not show: forgotten, read afresh.
        k.names.lock().unwrap().retain(|n| n != "a");
        l.forget();
        assert_eq!(l.read(&k).unwrap().len(), 2);
        assert_eq!(k.reads.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_kernel_without_a_revision_is_read_each_time() {
        let k = Counting::default();
        let l = Listed::default();
        l.read(&k).unwrap();
        l.read(&k).unwrap();
        assert_eq!(k.reads.load(Ordering::SeqCst), 2);
    }
}
