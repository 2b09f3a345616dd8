//! Escaping of names and paths for output: every name and path that armord
//! or armorctl prints, logs or publishes as text goes through here, so no
//! file name or profile name can forge a line.
//!
//! Control characters are written C-style (`\n`, `\t`, `\r`, `\e`, `\xNN`,
//! `\u{NNNN}` past ASCII) and bytes of a path that are not UTF-8 as `\xNN`.
//! A backslash is left as it is: escaping is then idempotent, so text that
//! was escaped once (by the daemon) is shown unchanged by armorctl.

use std::borrow::Cow;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Does `c` need escaping? Control characters, the Unicode line and
/// paragraph separators that some terminals and log viewers break lines
/// on, and the bidirectional formatting characters that reorder what is
/// shown around them.
fn needs(c: char) -> bool {
    c.is_control()
        || c == '\u{2028}'
        || c == '\u{2029}'
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || c == '\u{200e}'
        || c == '\u{200f}'
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\u{1b}' => out.push_str("\\e"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
}

/// `s` with every control character escaped; borrowed when there is none.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path as text: control characters escaped, bytes that are not UTF-8
/// written `\xNN`.
pub fn path(p: &Path) -> String {
    let bytes = p.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => text(s).into_owned(),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(&text(chunk.valid()));
                for b in chunk.invalid() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsStr;

    #[test]
    fn control_characters_are_written_c_style() {
        assert_eq!(
            text("a\nb\tc\rd\u{1b}e\u{7f}f\u{85}g"),
            "a\\nb\\tc\\rd\\ee\\x7ff\\u{0085}g"
        );
        assert_eq!(text("custom.a\u{2028}x"), "custom.a\\u{2028}x");
        // Bidirectional overrides would reorder what is shown around them.
        assert_eq!(text("a\u{202e}b\u{2066}c"), "a\\u{202e}b\\u{2066}c");
        assert!(matches!(text("plain/path ü"), Cow::Borrowed(_)));
        assert_eq!(path(Path::new(OsStr::from_bytes(b"/s/a\xff\nb"))), "/s/a\\xff\\nb");
    }

    proptest! {
        /// No input forges a line, and escaping twice changes nothing.
        #[test]
        fn never_a_line_break_and_idempotent(s in any::<String>(), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let once = text(&s).into_owned();
            prop_assert!(!once.chars().any(needs));
            prop_assert_eq!(text(&once).into_owned(), once.clone());
            let p = path(Path::new(OsStr::from_bytes(&raw)));
            prop_assert!(!p.chars().any(needs));
        }
    }
}
