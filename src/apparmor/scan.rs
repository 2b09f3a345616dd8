//! A tolerant scanner for top-level profile headers and their flags.
//!
//! The parser is the authority on names; this scanner only answers what the
//! parser does not tell us without a kernel: the mode a profile declares
//! (`flags=(complain)`), which the simulated kernel records and the
//! `mode = "enforce"` check reads. It also stands in for `--names` when
//! simulation runs on a machine without `apparmor_parser`, and reads the
//! names a file that will not load may define, which it protects.

use super::Mode;
use super::lexical::{blank_comments, tokens, unquote};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredProfile {
    pub name: String,
    /// `enforce`, `complain`, `kill`, `unconfined` (from `flags=`).
    pub mode: Mode,
    /// The executables it attaches to: its name when that is a path, or
    /// the path after the name (`profile x /usr/bin/x {`).
    pub attachment: Option<String>,
}

fn header_profile(header: &str) -> Option<DeclaredProfile> {
    let toks = tokens(header);
    let is_path = |t: &str| {
        let t = t.trim_start_matches('"');
        t.starts_with('/') || t.starts_with("@{")
    };
    let (name, rest, attachment) = match toks.first()?.as_str() {
        "profile" => {
            let rest = toks.get(2..).unwrap_or_default();
            let attachment = rest.first().filter(|t| is_path(t)).map(|t| unquote(t));
            let name = unquote(toks.get(1)?);
            let attachment = attachment.or_else(|| is_path(&name).then(|| name.clone()));
            (name, rest, attachment)
        }
        t if !t.contains('=')
            && (t.starts_with('/') || t.starts_with('"') || t.starts_with("@{") || t.starts_with(':')) =>
        {
            let name = unquote(t);
            let attachment = is_path(&name).then(|| name.clone());
            (name, &toks[1..], attachment)
        }
        _ => return None,
    };
    let flags = rest
        .iter()
        .skip_while(|t| !t.starts_with("flags="))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let mode = Mode::FLAG_WORDS
        .into_iter()
        .find(|m| flags.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == *m))
        .map_or(Mode::Enforce, Mode::from_word);
    Some(DeclaredProfile { name, mode, attachment })
}

/// A header longer than this is no header: dropped, so that a file of
/// many short lines after `profile x` costs linear time, not quadratic.
const MAX_HEADER: usize = 4096;

/// The top-level profiles a file declares, in order.
pub fn declared_profiles(text: &str) -> Vec<DeclaredProfile> {
    let text = blank_comments(text);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut header = String::new();
    let mut chars = text.chars().peekable();
    let mut prev = ' ';
    let mut in_quote = false;
    let mut parens = 0usize;
    while let Some(c) = chars.next() {
        if c == '"' {
            in_quote = !in_quote;
        }
        if in_quote {
            if depth == 0 {
                header.push(c);
            }
            prev = c;
            continue;
        }
        match c {
            // Variable reference `@{X}` or alternation `a{b,c}`: not a block.
            '{' if prev == '@' || !(prev.is_whitespace() || prev == ')') => {
                let mut level = 1;
                if depth == 0 {
                    header.push(c);
                }
                for d in chars.by_ref() {
                    if depth == 0 {
                        header.push(d);
                    }
                    match d {
                        '{' => level += 1,
                        '}' => {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                prev = '}';
                continue;
            }
            '{' => {
                if depth == 0
                    && let Some(p) = header_profile(header.trim())
                {
                    out.push(p);
                }
                header.clear();
                parens = 0;
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                header.clear();
            }
            '(' if depth == 0 => {
                parens += 1;
                header.push(c);
            }
            ')' if depth == 0 => {
                parens = parens.saturating_sub(1);
                header.push(c);
            }
            ',' if depth == 0 && parens > 0 => header.push(c),
            ',' | '\n' if depth == 0 => {
                // A statement ends at `,`; a header may span lines, so a
                // newline only ends it when the line was a complete statement.
                if c == ',' || header.len() > MAX_HEADER || header_profile(header.trim()).is_none() {
                    header.clear();
                } else {
                    header.push(' ');
                }
            }
            c if depth == 0 => header.push(c),
            _ => {}
        }
        prev = c;
    }
    out
}

/// Every name a file may define, read generously from its text: the
/// top-level headers [`declared_profiles`] finds, and on any line the word
/// after `profile`, and a line that starts with an attachment path and opens
/// a block. Used for files the parser rejected or armord refused: such a
/// file still protects the names it may define from removal. Hats and
/// children (`a//b`) are reduced to their top-level name.
pub fn names_a_file_may_define(text: &str) -> Vec<String> {
    let mut out: Vec<String> = declared_profiles(text).into_iter().map(|d| d.name).collect();
    for line in blank_comments(text).lines() {
        let toks = tokens(line);
        for (i, t) in toks.iter().enumerate() {
            if (t == "profile" || t.ends_with("{profile") || t.ends_with(",profile"))
                && let Some(next) = toks.get(i + 1)
            {
                out.push(unquote(next.trim_end_matches(['{', ','])));
            }
        }
        if let Some(first) = toks.first()
            && (first.starts_with('/') || first.starts_with("\"/"))
            && line.contains('{')
        {
            out.push(unquote(first.trim_end_matches('{')));
        }
    }
    let mut names: Vec<String> = out
        .into_iter()
        .map(|n| match n.split_once("//") {
            Some((top, _)) if !top.is_empty() => top.to_owned(),
            _ => n,
        })
        .filter(|n| !n.is_empty() && !n.starts_with('{'))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_modes() {
        let text = r#"
abi <abi/3.0>,
include <tunables/global>
@{HOMEDIRS}={/home/,/srv/}
# profile commented {
profile custom.a /usr/bin/{a,b} flags=(attach_disconnected, complain) {
  include <abstractions/base>
  /etc/{passwd,group} r,
  profile child { }
  ^hat { }
}
/usr/sbin/daemon {
  @{PROC}/** r,
}
profile "custom.with space" flags=(kill) {}
profile custom.enf {}
"#;
        let p = declared_profiles(text);
        let got: Vec<(&str, &str)> = p.iter().map(|d| (d.name.as_str(), d.mode.as_str())).collect();
        assert_eq!(
            got,
            [
                ("custom.a", "complain"),
                ("/usr/sbin/daemon", "enforce"),
                ("custom.with space", "kill"),
                ("custom.enf", "enforce")
            ]
        );
    }

    #[test]
    fn large_files_are_read_in_linear_time() {
        // Quadratic readers took minutes on these at the size limit.
        let many_lines = format!("profile x\n{}", "a\n".repeat(500_000));
        assert_eq!(declared_profiles(&many_lines), []);
        assert_eq!(names_a_file_may_define(&many_lines), ["x"]);
    }

    #[test]
    fn real_profiles_agree_with_the_parser_on_top_level_names() {
        // Every profile Debian ships in /etc/apparmor.d: when the parser is
        // present, the scanner must find the same top-level names.
        let parser = std::path::Path::new("/usr/sbin/apparmor_parser");
        let features = super::super::default_features_file();
        let Some(features) = features.filter(|_| parser.exists()) else {
            // CI installs Debian's apparmor package: there, a skip is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI without apparmor_parser and its features file"
            );
            return;
        };
        let mut checked = 0;
        for entry in std::fs::read_dir("/etc/apparmor.d").unwrap().flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let out = std::process::Command::new(parser)
                .arg("-M")
                .arg(&features)
                .arg("-N")
                .arg(&path)
                .output()
                .unwrap();
            if !out.status.success() {
                continue;
            }
            let mut want: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.contains("//"))
                .map(str::to_owned)
                .collect();
            let mut got: Vec<String> = declared_profiles(&std::fs::read_to_string(&path).unwrap())
                .into_iter()
                .map(|d| d.name)
                .collect();
            want.sort();
            got.sort();
            // Variables in names are expanded by the parser; skip those files.
            if got.iter().any(|n| n.contains("@{")) {
                continue;
            }
            assert_eq!(got, want, "{}", path.display());
            checked += 1;
        }
        assert!(checked > 5, "checked only {checked} files");
    }

    #[test]
    fn broken_files_still_name_their_profiles() {
        let f = names_a_file_may_define;
        assert_eq!(f("profile custom.a { /tmp/** rwzz, }"), ["custom.a"]);
        assert_eq!(f("profile custom.a {\n /tmp/** rw,\n"), ["custom.a"]);
        assert_eq!(f("  profile \"custom.q x\" flags=(complain) {"), ["custom.q x"]);
        assert_eq!(f("/usr/bin/foo {\n  garbage ,,,\n"), ["/usr/bin/foo"]);
        assert_eq!(f("profile a//hat {}\n# profile commented {}\n"), ["a"]);
        assert!(f("just words, no header\n").is_empty());
        assert!(f("").is_empty());
    }
}
