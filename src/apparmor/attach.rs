//! Whether what a compiled profile attaches to lies within
//! `allowed_attachments`: the language of its compiled attachment (the DFA
//! the kernel matches executables against, after aliases and variables)
//! must be contained in the language of the allowed globs.
//!
//! The globs: `**` matches anything, `*` anything but `/`, `?` one byte
//! but `/`, `{a,b}` either; every other byte itself.

use super::dfa::{Dfa, START};
use std::collections::{BTreeSet, HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    Any,
}

/// The allowed globs, as one NFA over bytes.
#[derive(Debug, Clone)]
pub struct Globs {
    alts: Vec<Vec<Tok>>,
    /// The bytes a glob names literally (and `/`): the others all behave alike.
    literal: BTreeSet<u8>,
}

/// At most this many alternatives from `{…}` expansion, and this many
/// states of the product, before a judgement gives up (and refuses).
pub(super) const MAX_ALTS: usize = 4096;
const MAX_PAIRS: usize = 100_000;
/// And at most this many glob positions stepped over in all.
const MAX_STEPS: usize = 5_000_000;

/// Expand `{a,b}` alternatives; past `limit` of them, stop (`out` then
/// holds more than `limit`).
pub(super) fn expand(g: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() > limit {
        return;
    }
    let Some(open) = g.find('{') else {
        out.push(g.to_owned());
        return;
    };
    let Some(close) = g[open..].find('}').map(|c| open + c) else {
        out.push(g.to_owned());
        return;
    };
    let (head, tail) = (&g[..open], &g[close + 1..]);
    for alt in g[open + 1..close].split(',') {
        if out.len() > limit {
            return;
        }
        expand(&format!("{head}{alt}{tail}"), out, limit);
    }
}

type Pos = (u32, u32);

impl Globs {
    pub fn new(globs: &[String]) -> Globs {
        let mut texts = Vec::new();
        for g in globs {
            expand(g, &mut texts, MAX_ALTS);
        }
        texts.sort();
        texts.dedup();
        let mut literal = BTreeSet::from([b'/']);
        let alts = texts
            .iter()
            .map(|t| {
                let b = t.as_bytes();
                let mut toks = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'*' if b.get(i + 1) == Some(&b'*') => {
                            toks.push(Tok::Any);
                            i += 1;
                        }
                        b'*' => toks.push(Tok::Star),
                        b'?' => toks.push(Tok::One),
                        c => {
                            literal.insert(c);
                            toks.push(Tok::Lit(c));
                        }
                    }
                    i += 1;
                }
                toks
            })
            .collect();
        Globs { alts, literal }
    }

    fn closure(&self, set: &mut BTreeSet<Pos>) {
        let mut todo: Vec<Pos> = set.iter().copied().collect();
        while let Some((g, p)) = todo.pop() {
            if let Some(Tok::Star | Tok::Any) = self.alts[g as usize].get(p as usize)
                && set.insert((g, p + 1))
            {
                todo.push((g, p + 1));
            }
        }
    }

    fn start(&self) -> BTreeSet<Pos> {
        let mut s = (0..self.alts.len() as u32).map(|g| (g, 0)).collect();
        self.closure(&mut s);
        s
    }

    fn step(&self, set: &BTreeSet<Pos>, c: u8) -> BTreeSet<Pos> {
        let mut out = BTreeSet::new();
        for &(g, p) in set {
            match self.alts[g as usize].get(p as usize) {
                Some(Tok::Lit(l)) if *l == c => {
                    out.insert((g, p + 1));
                }
                Some(Tok::One) if c != b'/' => {
                    out.insert((g, p + 1));
                }
                Some(Tok::Star) if c != b'/' => {
                    out.insert((g, p));
                }
                Some(Tok::Any) => {
                    out.insert((g, p));
                }
                _ => {}
            }
        }
        self.closure(&mut out);
        out
    }

    fn accepts(&self, set: &BTreeSet<Pos>) -> bool {
        set.iter().any(|&(g, p)| p as usize == self.alts[g as usize].len())
    }

    /// Whether the exact string `s` is matched.
    pub fn matches(&self, s: &[u8]) -> bool {
        let mut set = self.start();
        for &c in s {
            set = self.step(&set, c);
        }
        self.accepts(&set)
    }
}

/// Why an attachment is not within the globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    /// It attaches to this executable (a shortest example), which no glob
    /// matches.
    Path(String),
    /// Too large to judge within armord's bounds.
    TooComplex,
}

/// Whether every executable `dfa` attaches to is matched by `globs`. An
/// executable attaches when its path leads to an accepting state, or to a
/// state from which the rest of the attachment (the `\0`-separated
/// conditions that follow the path, such as xattrs) can still accept.
pub fn dfa_within(dfa: &Dfa, globs: &Globs) -> Result<(), Outside> {
    let mut classes: Vec<Vec<u8>> = dfa
        .byte_classes()
        .into_iter()
        .flat_map(|members| {
            // Split each class where the globs tell its bytes apart.
            let (lit, rest): (Vec<u8>, Vec<u8>) = members.into_iter().partition(|b| globs.literal.contains(b));
            lit.into_iter()
                .map(|b| vec![b])
                .chain((!rest.is_empty()).then_some(rest))
        })
        .collect();
    // A letter or digit, else a printable byte, first in each class and
    // classes with one first: the example found reads well.
    let rank = |b: &u8| match b {
        b if b.is_ascii_alphanumeric() => 0,
        b if b.is_ascii_graphic() => 1,
        _ => 2,
    };
    for c in &mut classes {
        c.sort_by_key(|b| (rank(b), *b));
    }
    classes.sort_by_key(|c| (rank(&c[0]), c[0]));
    // States from which an accepting state can be reached at all.
    let n = dfa.states();
    let mut back: Vec<Vec<u32>> = vec![Vec::new(); n];
    for s in 0..n as u32 {
        for c in std::iter::once(0u8).chain(classes.iter().map(|m| m[0])) {
            let t = dfa.next(s, c);
            if t != 0 {
                back[t as usize].push(s);
            }
        }
    }
    let mut live = vec![false; n];
    let mut todo: Vec<u32> = (0..n as u32).filter(|&s| dfa.accepts(s)).collect();
    for &s in &todo {
        live[s as usize] = true;
    }
    while let Some(s) = todo.pop() {
        for &p in &back[s as usize] {
            if !live[p as usize] {
                live[p as usize] = true;
                todo.push(p);
            }
        }
    }
    let attaches = |s: u32| dfa.accepts(s) || live[dfa.next(s, 0) as usize];
    if !live[START as usize] {
        return Ok(());
    }
    // Breadth first over (DFA state, glob positions), so the example found
    // is a shortest one.
    let mut seen: HashMap<(u32, BTreeSet<Pos>), usize> = HashMap::new();
    let mut paths: Vec<(usize, u8)> = Vec::new();
    let mut queue = VecDeque::new();
    let mut steps = 0usize;
    let first = (START, globs.start());
    seen.insert(first.clone(), 0);
    paths.push((usize::MAX, 0));
    queue.push_back(first);
    while let Some((s, set)) = queue.pop_front() {
        let id = seen[&(s, set.clone())];
        if attaches(s) && !globs.accepts(&set) {
            let mut bytes = Vec::new();
            let mut at = id;
            while at != 0 {
                bytes.push(paths[at].1);
                at = paths[at].0;
            }
            bytes.reverse();
            return Err(Outside::Path(String::from_utf8_lossy(&bytes).into_owned()));
        }
        for members in &classes {
            let c = members[0];
            let t = dfa.next(s, c);
            if t == 0 || !live[t as usize] {
                continue;
            }
            steps += set.len().max(1);
            if steps > MAX_STEPS {
                return Err(Outside::TooComplex);
            }
            let key = (t, globs.step(&set, c));
            if seen.contains_key(&key) {
                continue;
            }
            if seen.len() >= MAX_PAIRS {
                return Err(Outside::TooComplex);
            }
            seen.insert(key.clone(), paths.len());
            paths.push((id, c));
            queue.push_back(key);
        }
    }
    Ok(())
}

/// Whether a profile without a compiled attachment, which the kernel
/// attaches by its name, stays within the globs: a name that is not an
/// absolute path attaches to nothing.
pub fn name_within(name: &str, globs: &Globs) -> Result<(), Outside> {
    if !name.starts_with('/') || globs.matches(name.as_bytes()) {
        Ok(())
    } else {
        Err(Outside::Path(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(globs: &[&str]) -> Globs {
        Globs::new(&globs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn glob_semantics() {
        let a = g(&["/opt/**", "/usr/local/bin/*", "/srv/{a,b}/x?"]);
        assert!(a.matches(b"/opt/x/y/z"));
        assert!(a.matches(b"/usr/local/bin/tool"));
        assert!(!a.matches(b"/usr/local/bin/sub/tool"));
        assert!(a.matches(b"/srv/b/x1"));
        assert!(!a.matches(b"/srv/c/x1"));
        assert!(!a.matches(b"/srv/a/x/"));
        assert!(!a.matches(b"/usr/sbin/sshd"));
        assert_eq!(name_within("custom.x", &a), Ok(()));
        assert_eq!(name_within("/opt/a", &a), Ok(()));
        assert_eq!(
            name_within("/usr/sbin/sshd", &a),
            Err(Outside::Path("/usr/sbin/sshd".into()))
        );
    }
}
