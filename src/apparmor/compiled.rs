//! What the parser compiled: the profiles of a compiled policy set, read
//! from the bytes it writes to its cache (and to the kernel).
//!
//! The format is the kernel's (`security/apparmor/policy_unpack.c`): a
//! stream of typed elements, each optionally preceded by a name. Each
//! entry is `version` (u32), an optional `namespace` (string), then the
//! `profile` struct: its full name (`a`, `a//child`, `a//hat`), optional
//! members, among them the attachment's DFA (`aadfa` before `flags`), and
//! the `flags` struct: hat bit, mode, audit.
//!
//! Every bound on a writer is judged from this, never from a scan of the
//! profile's text alone: it is what the kernel gets.

use super::Mode;
use super::dfa::Dfa;

/// One profile of a compiled set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledProfile {
    /// The full name: `a`, `a//child`, `a//hat`.
    pub name: String,
    pub mode: Mode,
    pub hat: bool,
    /// The attachment the kernel matches executables against, when the
    /// parser compiled one; without it the kernel attaches by name.
    pub xmatch: Option<Dfa>,
}

/// Why a compiled set could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compiled policy at byte {offset}: {reason}")]
pub struct CompiledError {
    pub offset: usize,
    pub reason: String,
}

const AA_U8: u8 = 0;
const AA_U16: u8 = 1;
const AA_U32: u8 = 2;
const AA_U64: u8 = 3;
const AA_NAME: u8 = 4;
const AA_STRING: u8 = 5;
const AA_BLOB: u8 = 6;
const AA_STRUCT: u8 = 7;
const AA_STRUCTEND: u8 = 8;
const AA_LIST: u8 = 9;
const AA_LISTEND: u8 = 10;
const AA_ARRAY: u8 = 11;
const AA_ARRAYEND: u8 = 12;

/// The version word's bit that makes every profile of the set complain
/// (`apparmor_parser -C`).
const FORCE_COMPLAIN_FLAG: u32 = 0x800;
/// The flags word's hat bit.
const PACKED_FLAG_HAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Int(u64),
    Str(&'a [u8]),
    Blob(&'a [u8]),
    Open,
    Close,
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, CompiledError> {
        Err(CompiledError {
            offset: self.at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CompiledError> {
        match self.data.get(self.at..self.at.saturating_add(n)) {
            Some(s) if self.at.checked_add(n).is_some() => {
                self.at += n;
                Ok(s)
            }
            _ => self.fail(format!("truncated: {n} bytes wanted")),
        }
    }

    fn le(&mut self, n: usize) -> Result<u64, CompiledError> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn string(&mut self) -> Result<&'a [u8], CompiledError> {
        let len = self.le(2)? as usize;
        let s = self.take(len)?;
        match s.split_last() {
            Some((0, body)) if !body.contains(&0) => Ok(body),
            _ => self.fail("a string without its one terminating NUL"),
        }
    }

    /// The next element: its name, if one precedes it, and its value.
    fn element(&mut self) -> Result<(Option<&'a [u8]>, Value<'a>), CompiledError> {
        let mut name = None;
        let mut code = self.take(1)?[0];
        if code == AA_NAME {
            name = Some(self.string()?);
            code = self.take(1)?[0];
        }
        let value = match code {
            AA_U8 => Value::Int(self.le(1)?),
            AA_U16 => Value::Int(self.le(2)?),
            AA_U32 => Value::Int(self.le(4)?),
            AA_U64 => Value::Int(self.le(8)?),
            AA_STRING => Value::Str(self.string()?),
            AA_BLOB => {
                let len = self.le(4)? as usize;
                Value::Blob(self.take(len)?)
            }
            AA_STRUCT | AA_LIST => Value::Open,
            AA_ARRAY => {
                self.le(2)?;
                Value::Open
            }
            AA_STRUCTEND | AA_LISTEND | AA_ARRAYEND => Value::Close,
            c => return self.fail(format!("unknown element type {c}")),
        };
        Ok((name, value))
    }
}

/// Nesting deeper than this is refused (the parser writes four levels).
const MAX_DEPTH: usize = 64;

/// Every profile of a compiled policy set, in its order. An error for
/// anything not laid out as the kernel reads it, and for a namespace (armord
/// loads into the root namespace only).
pub fn read_policy(data: &[u8]) -> Result<Vec<CompiledProfile>, CompiledError> {
    Ok(entries(data)?.into_iter().map(|(_, p)| p).collect())
}

/// Each entry of a compiled set with where it ends.
fn entries(data: &[u8]) -> Result<Vec<(usize, CompiledProfile)>, CompiledError> {
    let mut r = Reader { data, at: 0 };
    let mut out = Vec::new();
    // A file without profiles compiles to nothing.
    while r.at < data.len() {
        let p = read_entry(&mut r)?;
        out.push((r.at, p));
    }
    Ok(out)
}

fn read_entry(r: &mut Reader) -> Result<CompiledProfile, CompiledError> {
    let version = match r.element()? {
        (Some(b"version"), Value::Int(v)) => v as u32,
        _ => return r.fail("an entry that does not start with its version"),
    };
    let (name, value) = r.element()?;
    if name == Some(b"namespace".as_slice()) {
        let ns = match value {
            Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
            _ => String::new(),
        };
        return r.fail(format!(
            "the entry names a policy namespace ({}); armord loads into the root namespace only",
            crate::escape::text(&ns)
        ));
    }
    if name != Some(b"profile".as_slice()) || value != Value::Open {
        return r.fail("an entry without its profile");
    }
    let profile_name = match r.element()? {
        (None, Value::Str(s)) if !s.is_empty() => match std::str::from_utf8(s) {
            Ok(s) => s.to_owned(),
            Err(_) => return r.fail("a profile name that is not UTF-8"),
        },
        _ => return r.fail("a profile without its name"),
    };
    let mut depth = 1usize;
    let mut xmatch = None;
    let mut flags: Option<(u32, u32)> = None;
    while depth > 0 {
        let (name, value) = r.element()?;
        match value {
            Value::Open if depth == 1 && name == Some(b"flags".as_slice()) => {
                if flags.is_some() {
                    return r.fail("profile flags given twice");
                }
                let mut ints = [0u32; 3];
                for v in &mut ints {
                    match r.element()? {
                        (None, Value::Int(i)) => *v = i as u32,
                        _ => return r.fail("profile flags that are not three numbers"),
                    }
                }
                if r.element()? != (None, Value::Close) {
                    return r.fail("profile flags with more than three numbers");
                }
                flags = Some((ints[0], ints[1]));
            }
            Value::Open => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return r.fail("nested too deep");
                }
            }
            Value::Close => depth -= 1,
            Value::Blob(b) if depth == 1 && flags.is_none() && name == Some(b"aadfa".as_slice()) => {
                if xmatch.is_some() {
                    return r.fail("two attachments before the flags");
                }
                xmatch = Some(Dfa::read(b).map_err(|e| CompiledError {
                    offset: r.at,
                    reason: format!("the attachment of profile {}: {e}", crate::escape::text(&profile_name)),
                })?);
            }
            _ => {}
        }
    }
    let Some((bits, mode)) = flags else {
        return r.fail(format!(
            "profile {} without its flags",
            crate::escape::text(&profile_name)
        ));
    };
    let mode = if version & FORCE_COMPLAIN_FLAG != 0 {
        Mode::Complain
    } else {
        Mode::from_packed(mode)
    };
    Ok(CompiledProfile {
        name: profile_name,
        mode,
        hat: bits & PACKED_FLAG_HAT != 0,
        xmatch,
    })
}

/// Split the compiled output of a batch, where a profile named
/// `{prefix}{i}` follows the `i`th file, into each file's policy (without
/// the separator). All `None` when the output cannot be read or split so.
pub fn split_at_separators(data: &[u8], prefix: &str, files: usize) -> Vec<Option<Vec<u8>>> {
    let fail = || vec![None; files];
    let Ok(entries) = entries(data) else { return fail() };
    let mut out = Vec::with_capacity(files);
    let mut from = 0;
    let mut current: Vec<u8> = Vec::new();
    for (end, p) in entries {
        match p.name.strip_prefix(prefix) {
            Some(n) if n.parse::<usize>().ok() == Some(out.len()) => {
                out.push(Some(std::mem::take(&mut current)));
            }
            Some(_) => return fail(),
            None => current.extend_from_slice(&data[from..end]),
        }
        from = end;
    }
    if out.len() != files || !current.is_empty() {
        return fail();
    }
    out
}

/// The profile names of a compiled policy set, in its order (top level and
/// children, `a//b`); `None` when it cannot be read.
pub fn names_in_policy(policy: &[u8]) -> Option<Vec<String>> {
    read_policy(policy)
        .ok()
        .map(|p| p.into_iter().map(|p| p.name).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A compiled entry as the parser lays it out: header, name, `body`
    /// (members before the flags), the flags, the end of the struct.
    pub fn entry(name: &str, body: &[u8], mode: u32, hat: bool) -> Vec<u8> {
        let mut e = b"\x04\x08\x00version\x00\x02\x07\x20\x20\x00".to_vec();
        e.extend_from_slice(b"\x04\x08\x00profile\x00\x07\x05");
        e.extend_from_slice(&(name.len() as u16 + 1).to_le_bytes());
        e.extend_from_slice(name.as_bytes());
        e.push(0);
        e.extend_from_slice(body);
        e.extend_from_slice(b"\x04\x06\x00flags\x00\x07");
        for v in [u32::from(hat), mode, 0] {
            e.push(AA_U32);
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.push(AA_STRUCTEND);
        e.push(AA_STRUCTEND);
        e
    }

    #[test]
    fn entries_names_modes_and_hats() {
        let set = [
            entry("a", b"\x04\x05\x00caps\x00\x07\x02\0\0\0\0\x08", 0, false),
            entry("a//hat", b"", 2, true),
            entry("b", b"\x0b\x02\x00\x02\0\0\0\0\x02\0\0\0\0\x0c", 1, false),
        ]
        .concat();
        let p = read_policy(&set).unwrap();
        let got: Vec<(&str, Mode, bool)> = p.iter().map(|p| (p.name.as_str(), p.mode.clone(), p.hat)).collect();
        assert_eq!(
            got,
            [
                ("a", Mode::Enforce, false),
                ("a//hat", Mode::Kill, true),
                ("b", Mode::Complain, false)
            ]
        );
        assert_eq!(names_in_policy(&set).unwrap(), ["a", "a//hat", "b"]);
    }

    #[test]
    fn force_complain_makes_every_profile_complain() {
        let mut e = entry("a", b"", 0, false);
        e[13] |= 0x08; // version |= 0x800
        assert_eq!(read_policy(&e).unwrap()[0].mode, Mode::Complain);
    }

    #[test]
    fn anything_else_is_an_error_not_a_guess() {
        assert_eq!(read_policy(b""), Ok(vec![]));
        assert!(read_policy(b"compiled:profile a {}").is_err());
        let good = entry("longname", b"", 0, false);
        for cut in 1..good.len() {
            assert!(read_policy(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut ns = b"\x04\x08\x00version\x00\x02\0\0\0\0\x04\x0a\x00namespace\x00\x05\x03\x00ns\x00".to_vec();
        ns.extend_from_slice(&entry("a", b"", 0, false)[16..]);
        let e = read_policy(&ns).unwrap_err();
        assert!(e.reason.contains("namespace"), "{e}");
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"\x04\x08\x00version\x00\x02\0\0\0\0garbage");
        assert!(read_policy(&trailing).is_err());
        let no_flags = {
            let mut e = b"\x04\x08\x00version\x00\x02\0\0\0\0\x04\x08\x00profile\x00\x07\x05\x02\x00a\x00".to_vec();
            e.push(AA_STRUCTEND);
            e
        };
        assert!(read_policy(&no_flags).unwrap_err().reason.contains("without its flags"));
        let deep = {
            let mut e = b"\x04\x08\x00version\x00\x02\0\0\0\0\x04\x08\x00profile\x00\x07\x05\x02\x00a\x00".to_vec();
            e.extend(std::iter::repeat_n(AA_STRUCT, 100));
            e
        };
        assert!(read_policy(&deep).unwrap_err().reason.contains("too deep"));
    }
}
