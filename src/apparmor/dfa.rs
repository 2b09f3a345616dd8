//! A compiled AppArmor DFA (`aadfa`), read as the kernel reads it
//! (`security/apparmor/match.c`): big-endian tables of accept, base, check,
//! default, equivalence classes and next. Used to judge what a profile's
//! compiled attachment matches.

/// The DFA's magic number.
const MAGIC: u32 = 0x1B5E_783D;
/// The state every match starts in; state 0 is the dead state.
pub const START: u32 = 1;
const BASE_IDX_MASK: u32 = 0x00ff_ffff;
const FLAG_DIFF_ENCODE: u32 = 0x8000_0000;

const ID_ACCEPT: u16 = 1;
const ID_BASE: u16 = 2;
const ID_CHK: u16 = 3;
const ID_DEF: u16 = 4;
const ID_EC: u16 = 5;
const ID_NXT: u16 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dfa {
    accept: Vec<u32>,
    base: Vec<u32>,
    check: Vec<u32>,
    def: Vec<u32>,
    next: Vec<u32>,
    ec: Option<Vec<u32>>,
}

fn be(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

impl Dfa {
    /// Read a DFA blob. An error names what is wrong; nothing panics.
    pub fn read(blob: &[u8]) -> Result<Dfa, String> {
        // The kernel aligns a DFA to 8 bytes of the policy it loads: the
        // parser pads the blob's start with up to 7 zero bytes.
        let pad = blob.iter().take(8).take_while(|&&b| b == 0).count();
        let blob = if pad < 8 { &blob[pad..] } else { blob };
        let word = |at: usize| blob.get(at..at + 4).map(be).ok_or("truncated header");
        if word(0)? != MAGIC {
            return Err("not an AppArmor DFA (bad magic)".into());
        }
        let hsize = word(4)? as usize;
        if hsize < 12 || hsize > blob.len() {
            return Err(format!("header size {hsize} outside the blob"));
        }
        let mut tables: [Option<Vec<u32>>; 9] = Default::default();
        let mut at = hsize;
        while blob.len().saturating_sub(at) >= 12 {
            let h = &blob[at..at + 12];
            let id = u16::from_be_bytes([h[0], h[1]]);
            let flags = u16::from_be_bytes([h[2], h[3]]);
            let len = be(&h[8..12]) as usize;
            let width = match flags {
                1 => 1,
                2 => 2,
                4 => 4,
                f => return Err(format!("table {id} has element width flags {f}")),
            };
            let bytes = len.checked_mul(width).ok_or("table too large")?;
            let data = blob
                .get(at + 12..(at + 12).saturating_add(bytes))
                .filter(|d| d.len() == bytes)
                .ok_or_else(|| format!("table {id} runs past the blob"))?;
            if len == 0 || id == 0 || usize::from(id) >= tables.len() {
                return Err(format!("table {id} of {len} entries is not one the kernel reads"));
            }
            tables[usize::from(id)] = Some(data.chunks_exact(width).map(be).collect());
            at += (12 + bytes).div_ceil(8) * 8;
        }
        let mut take = |id: u16, what: &str| tables[usize::from(id)].take().ok_or(format!("no {what} table"));
        let dfa = Dfa {
            accept: take(ID_ACCEPT, "accept")?,
            base: take(ID_BASE, "base")?,
            check: take(ID_CHK, "check")?,
            def: take(ID_DEF, "default")?,
            next: take(ID_NXT, "next")?,
            ec: take(ID_EC, "").ok(),
        };
        let states = dfa.base.len();
        if dfa.def.len() != states || dfa.accept.len() != states || states < 2 {
            return Err("the state tables differ in length".into());
        }
        if dfa.next.len() != dfa.check.len() {
            return Err("the next and check tables differ in length".into());
        }
        if dfa.ec.as_ref().is_some_and(|ec| ec.len() != 256) {
            return Err("an equivalence table not of 256 entries".into());
        }
        Ok(dfa)
    }

    pub fn states(&self) -> usize {
        self.base.len()
    }

    /// The state after `state` reads byte `c`; 0 (dead) when the tables
    /// lead outside themselves.
    pub fn next(&self, mut state: u32, c: u8) -> u32 {
        let c = match &self.ec {
            Some(ec) => ec[usize::from(c)],
            None => u32::from(c),
        };
        // A diff-encoded state defers to its default, which may defer
        // again: never more often than there are states.
        for _ in 0..=self.states() {
            let Some(&b) = self.base.get(state as usize) else {
                return 0;
            };
            let pos = ((b & BASE_IDX_MASK) + c) as usize;
            if self.check.get(pos) == Some(&state) {
                return self
                    .next
                    .get(pos)
                    .copied()
                    .filter(|&s| (s as usize) < self.states())
                    .unwrap_or(0);
            }
            state = match self.def.get(state as usize) {
                Some(&d) if (d as usize) < self.states() => d,
                _ => return 0,
            };
            if b & FLAG_DIFF_ENCODE == 0 {
                return state;
            }
        }
        0
    }

    /// Whether `state` accepts (any permission in its accept entry).
    pub fn accepts(&self, state: u32) -> bool {
        self.accept.get(state as usize).is_some_and(|&a| a != 0)
    }

    /// The bytes, one representative of each class the DFA tells apart
    /// (all 255 non-NUL bytes when it has no equivalence table), as
    /// (representative, class members).
    pub fn byte_classes(&self) -> Vec<Vec<u8>> {
        let mut classes: Vec<(u32, Vec<u8>)> = Vec::new();
        for b in 1..=255u8 {
            let class = match &self.ec {
                Some(ec) => ec[usize::from(b)],
                None => u32::from(b),
            };
            match classes.iter_mut().find(|(c, _)| *c == class) {
                Some((_, members)) => members.push(b),
                None => classes.push((class, vec![b])),
            }
        }
        classes.into_iter().map(|(_, m)| m).collect()
    }

    /// Whether the whole of `s` leads from the start to an accepting state.
    pub fn matches(&self, s: &[u8]) -> bool {
        self.accepts(s.iter().fold(START, |st, &c| self.next(st, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DFA blob from tables (id, width, values), as the parser lays it out.
    pub fn blob(tables: &[(u16, u16, Vec<u32>)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_be_bytes());
        b.extend_from_slice(&24u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(b"notflex\0\0\0");
        for (id, width, vals) in tables {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&width.to_be_bytes());
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&(vals.len() as u32).to_be_bytes());
            for v in vals {
                b.extend_from_slice(&v.to_be_bytes()[4 - usize::from(*width)..]);
            }
            while b.len() % 8 != 0 {
                b.push(0);
            }
        }
        b
    }

    #[test]
    fn a_hand_built_dfa_matches_ab() {
        // States: 0 dead, 1 start, 2 after `a`, 3 after `ab` (accepts).
        // Without an equivalence table the columns are the bytes.
        let mut next = vec![0; 300];
        let mut check = vec![u32::MAX; 300];
        next[u32::from(b'a') as usize] = 2;
        check[u32::from(b'a') as usize] = 1;
        next[10 + u32::from(b'b') as usize] = 3;
        check[10 + u32::from(b'b') as usize] = 2;
        let d = Dfa::read(&blob(&[
            (ID_ACCEPT, 4, vec![0, 0, 0, 1]),
            (ID_BASE, 4, vec![0, 0, 10, 0]),
            (ID_CHK, 2, check.iter().map(|&c| c & 0xffff).collect()),
            (ID_DEF, 2, vec![0, 0, 0, 0]),
            (ID_NXT, 2, next),
        ]))
        .unwrap();
        assert!(d.matches(b"ab"));
        assert!(!d.matches(b"a"));
        assert!(!d.matches(b"abc"));
        assert!(!d.matches(b"b"));
        assert_eq!(d.byte_classes().len(), 255);
    }

    #[test]
    fn bad_blobs_are_errors() {
        assert!(Dfa::read(b"").is_err());
        assert!(Dfa::read(&[0x1b, 0x5e, 0x78, 0x3d, 0, 0, 0, 0x18]).is_err());
        let good = blob(&[
            (ID_ACCEPT, 4, vec![0, 0]),
            (ID_BASE, 4, vec![0, 0]),
            (ID_CHK, 2, vec![0]),
            (ID_DEF, 2, vec![0, 0]),
            (ID_NXT, 2, vec![0]),
        ]);
        assert!(Dfa::read(&good).is_ok());
        for cut in 0..good.len() - 8 {
            let _ = Dfa::read(&good[..cut]);
        }
        let lopsided = blob(&[
            (ID_ACCEPT, 4, vec![0, 0, 0]),
            (ID_BASE, 4, vec![0, 0]),
            (ID_CHK, 2, vec![0]),
            (ID_DEF, 2, vec![0, 0]),
            (ID_NXT, 2, vec![0]),
        ]);
        assert!(Dfa::read(&lopsided).is_err());
        // Tables that point outside themselves lead to the dead state.
        let wild = Dfa::read(&blob(&[
            (ID_ACCEPT, 4, vec![0, 1]),
            (ID_BASE, 4, vec![0, 0xff_fff0]),
            (ID_CHK, 2, vec![1]),
            (ID_DEF, 2, vec![0, 9]),
            (ID_NXT, 2, vec![7]),
        ]))
        .unwrap();
        for c in 0..=255u8 {
            assert_eq!(wild.next(START, c), 0);
        }
    }
}
