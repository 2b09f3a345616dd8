//! A tolerant scanner for top-level profile headers and their flags.
//!
//! The parser is the authority on names; this scanner only answers what the
//! parser does not tell us without a kernel: the mode a profile declares
//! (`flags=(complain)`), which the simulated kernel records and the
//! `mode = "enforce"` check reads. It also stands in for `--names` when
//! simulation runs on a machine without `apparmor_parser`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredProfile {
    pub name: String,
    /// `enforce`, `complain`, `kill`, `unconfined` (from `flags=`).
    pub mode: String,
    /// The executables it attaches to: its name when that is a path, or
    /// the path after the name (`profile x /usr/bin/x {`).
    pub attachment: Option<String>,
}

/// Remove comments (a `#` outside quotes, except `#include`), keep newlines.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#include") {
            out.push('\n');
            continue;
        }
        let mut in_quote = false;
        for c in line.chars() {
            match c {
                '"' => in_quote = !in_quote,
                '#' if !in_quote => break,
                _ => {}
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

fn unquote(tok: &str) -> String {
    tok.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tok)
        .to_owned()
}

/// Split a header into tokens, keeping quoted strings whole.
fn tokens(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    for c in header.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            c if c.is_whitespace() && !in_quote => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
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
    let mode = ["complain", "kill", "unconfined", "prompt"]
        .into_iter()
        .find(|m| flags.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == *m))
        .unwrap_or("enforce");
    Some(DeclaredProfile {
        name,
        mode: mode.to_owned(),
        attachment,
    })
}

/// A header longer than this is no header: dropped, so that a file of
/// many short lines after `profile x` costs linear time, not quadratic.
const MAX_HEADER: usize = 4096;

/// The top-level profiles a file declares, in order.
pub fn declared_profiles(text: &str) -> Vec<DeclaredProfile> {
    let text = strip_comments(text);
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

/// The directories a profile may include from: the system's AppArmor
/// policy, owned by root and shipped by the distribution.
pub const INCLUDE_ROOTS: &[&str] = &["/etc/apparmor.d", "/usr/share/apparmor"];

/// Check every `include` / `#include` (with or without `if exists`), and
/// every `abi` (which the parser opens the same way), against the include
/// policy, before the parser sees the file: `<rel>` (the parser's
/// search path, which is the system's policy directory) with no `..`, or
/// `"/abs"` inside [`INCLUDE_ROOTS`] with no `..`. Anything else could make
/// the parser (running as root) read files outside the policy, or depend on
/// files armord does not manage. Returns `line N: reason` for the first
/// include that breaks the policy.
pub fn include_violation(text: &str) -> Option<String> {
    // The text without comments, as one string: a target may follow its
    // keyword on a later line.
    let code = code_without_comments(text);
    let mut line_starts = vec![0];
    line_starts.extend(code.match_indices('\n').map(|(i, _)| i + 1));
    let line_of = |at: usize| line_starts.partition_point(|&s| s <= at);
    let mut found: Option<(usize, String)> = None;
    for keyword in ["include", "abi"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(keyword).map(|i| i + from) {
            from = at + keyword.len();
            let before = code[..at].chars().next_back();
            let after = code[from..].chars().next();
            let starts = before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | '}' | ',' | '#'));
            let ends = after.is_none_or(|c| c.is_whitespace() || c == '<' || c == '"');
            if !(starts && ends) {
                continue;
            }
            // A target is at most a path's length away.
            let end = code[from..]
                .char_indices()
                .nth(MAX_TARGET)
                .map_or(code.len(), |(i, _)| from + i);
            if let Some(v) = include_target_violation(keyword, &code[from..end])
                && found.as_ref().is_none_or(|(f, _)| at < *f)
            {
                found = Some((at, v));
                break;
            }
        }
    }
    found.map(|(at, v)| format!("line {}: {v}", line_of(at)))
}

/// How far after its keyword an include's target is looked for.
const MAX_TARGET: usize = 4096;

/// The text with its comments blanked out (newlines kept, so lines keep
/// their numbers), read as the parser reads it: a quoted string runs on
/// across lines and a `\"` in it does not end it; a `#` starts a comment
/// only where a token could start (at the start of a line or after white
/// space), and never `#include`. Where this reading could differ from the
/// parser's, it keeps more text, never less: what is kept is checked.
fn code_without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = '\n';
    for (i, c) in text.char_indices() {
        if comment {
            if c == '\n' {
                comment = false;
                out.push(c);
            }
            prev = c;
            continue;
        }
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '#' && prev.is_whitespace() && !text[i..].starts_with("#include") {
            comment = true;
            prev = c;
            continue;
        }
        out.push(c);
        prev = c;
    }
    out
}

/// A line without its comment: `#` outside quotes, unless it starts `#include`.
fn without_comment(line: &str) -> &str {
    let mut in_quote = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '#' if !in_quote && !line[i..].starts_with("#include") => return &line[..i],
            _ => {}
        }
    }
    line
}

/// What is wrong with the include whose target starts `rest`.
fn include_target_violation(keyword: &str, rest: &str) -> Option<String> {
    let mut rest = rest.trim_start();
    if keyword == "include"
        && let Some(r) = rest.strip_prefix("if")
    {
        match r.trim_start().strip_prefix("exists") {
            Some(r) => rest = r.trim_start(),
            // `include if …` without `exists`: the parser says what is wrong.
            None => return None,
        }
    }
    let shown: String = rest.chars().take_while(|&c| c != '\n').take(80).collect();
    let why = |m: &str| Some(format!("{keyword} {}: {m}", shown.trim_end()));
    let (target, absolute_form) = if let Some(r) = rest.strip_prefix('<') {
        match r.find('>') {
            Some(end) => (&r[..end], false),
            None => return why("unterminated <...>"),
        }
    } else if let Some(r) = rest.strip_prefix('"') {
        match r.find('"') {
            Some(end) => (&r[..end], true),
            None => return why("unterminated quote"),
        }
    } else {
        return why("only <relative> or \"/absolute\" includes are allowed");
    };
    if target.contains('\\') {
        return why("escape sequences are not allowed in a target");
    }
    let path = std::path::Path::new(target);
    if target.is_empty() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return why("`..` and empty paths are not allowed");
    }
    if !absolute_form {
        return path
            .is_absolute()
            .then(|| why("an absolute path in <...> is not allowed"))
            .flatten();
    }
    if !path.is_absolute() {
        return why(&format!(
            "a relative quoted include would be read from armord's store, not the source; use <...> or an absolute path in {}",
            INCLUDE_ROOTS.join(" or ")
        ));
    }
    if !INCLUDE_ROOTS.iter().any(|root| path.starts_with(root)) {
        return why(&format!(
            "outside the system's AppArmor directories ({})",
            INCLUDE_ROOTS.join(", ")
        ));
    }
    None
}

/// A quoted profile or hat name with a backslash escape or a control
/// character. `apparmor_parser --names` prints names one per line, so a name
/// like `"a\nb"` would read as two profiles `a` and `b`; armord refuses such
/// names before the parser runs. Returns `line N: reason`.
pub fn escaped_name(text: &str) -> Option<String> {
    for (n, line) in text.lines().enumerate() {
        let code = without_comment(line);
        for (at, _) in code.match_indices('"') {
            let before = code[..at].trim_end();
            let is_name = before.ends_with('^')
                || ["profile", "hat"].iter().any(|k| {
                    before.ends_with(k)
                        && before[..before.len() - k.len()]
                            .chars()
                            .next_back()
                            .is_none_or(|c| c.is_whitespace() || matches!(c, '{' | '}' | ','))
                });
            if !is_name {
                continue;
            }
            let rest = &code[at + 1..];
            let name = rest.split('"').next().unwrap_or(rest);
            if name.contains('\\') || name.chars().any(char::is_control) || !rest.contains('"') {
                let shown: String = name.chars().take(64).collect();
                return Some(format!(
                    "line {}: profile name \"{shown}\" has an escape sequence or control character; names must be plain text",
                    n + 1
                ));
            }
        }
    }
    None
}

/// What the include policy or the name rules refuse in a file, checked
/// before the parser runs.
pub fn policy_violation(text: &str) -> Option<String> {
    include_violation(text)
        .map(|v| format!("{v} (include policy)"))
        .or_else(|| escaped_name(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_policy() {
        let ok = [
            "include <tunables/global>\nprofile a { include <abstractions/base> }\n",
            "#include <abstractions/nameservice>\n",
            "include if exists <local/usr.sbin.foo>\n",
            "  #include \"/etc/apparmor.d/abstractions/base\"\n",
            "include \"/usr/share/apparmor/extra\"\n",
            "profile a {\n  /usr/include/** r,\n  /usr/include r,\n  # include \"/etc/shadow\" is a comment\n}\n",
        ];
        for t in ok {
            assert_eq!(include_violation(t), None, "{t}");
        }
        let bad = [
            (
                "include \"/etc/shadow\"\n",
                "line 1",
                "outside the system's AppArmor directories",
            ),
            (
                "profile a {\n  #include </etc/shadow>\n}\n",
                "line 2",
                "absolute path in <...>",
            ),
            ("profile a { include <../../etc/shadow> }\n", "line 1", "`..`"),
            ("include \"/etc/apparmor.d/../shadow\"\n", "line 1", "`..`"),
            ("include \"abstractions/base\"\n", "line 1", "relative quoted include"),
            ("include if exists \"/proc/self/environ\"\n", "line 1", "outside"),
            ("include /etc/shadow\n", "line 1", "only <relative>"),
            ("include <abstractions/base\n", "line 1", "unterminated"),
            (
                "include \"/etc/apparmor.d/\\x2e\\x2e/\\x2e\\x2e/tmp/x\"\n",
                "line 1",
                "escape sequences",
            ),
            ("include <tunables/\\056\\056/x>\n", "line 1", "escape sequences"),
            ("profile a {\n /tmp/a#b r, include \"/tmp/x\"\n}\n", "line 2", "outside"),
            (
                "profile a {\n \"/tmp/a\n# \" r,  include \"/tmp/x\"\n}\n",
                "line 3",
                "outside",
            ),
            (
                "profile a {\n \"/tmp/a\\\"\n# \" r,  include \"/tmp/x\"\n}\n",
                "line 3",
                "outside",
            ),
            ("abi\n  \"/etc/shadow\",\n", "line 1", "outside"),
        ];
        for (t, line, why) in bad {
            let v = include_violation(t).unwrap_or_else(|| panic!("not refused: {t}"));
            assert!(v.starts_with(line) && v.contains(why), "{t}: {v}");
        }
    }

    #[test]
    fn large_files_are_read_in_linear_time() {
        // Quadratic readers took minutes on these at the size limit.
        let many_lines = format!("profile x\n{}", "a\n".repeat(500_000));
        assert_eq!(declared_profiles(&many_lines), []);
        assert_eq!(names_a_file_may_define(&many_lines), ["x"]);
        let includes = format!("{}>", "include <x ".repeat(90_000));
        assert!(include_violation(&includes).is_some_and(|v| v.contains("unterminated")));
    }

    #[test]
    fn names_with_escapes_or_control_characters() {
        for t in [
            "profile \"my app\" {}\n",
            "profile /usr/bin/x {}\n",
            "profile a { ^hat {} profile child {} }\n",
            "profile a {\n  /srv/\"quoted\\ path\" r,\n}\n",
        ] {
            assert_eq!(escaped_name(t), None, "{t}");
        }
        for t in [
            "profile \"a\\nb\" {}\n",
            "profile a {\n  ^\"h\\tx\" {}\n}\n",
            "profile a {\n  profile \"c\\012d\" {}\n}\n",
            "profile \"a\nb\" {}\n",
            "hat \"x\\ny\" {}\n",
        ] {
            let v = escaped_name(t).unwrap_or_else(|| panic!("not refused: {t:?}"));
            assert!(v.contains("escape sequence or control character"), "{v}");
        }
    }

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
    fn real_profiles_agree_with_the_parser_on_top_level_names() {
        // Every profile Debian ships in /etc/apparmor.d: when the parser is
        // present, the scanner must find the same top-level names.
        let parser = std::path::Path::new("/usr/sbin/apparmor_parser");
        let Some(features) = super::super::default_features_file() else {
            return;
        };
        if !parser.exists() {
            return;
        }
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
}

/// Every name a file may define, read generously from its text: the
/// top-level headers [`declared_profiles`] finds, and on any line the word
/// after `profile`, and a line that starts with an attachment path and opens
/// a block. Used for files the parser rejected or armord refused: such a
/// file still protects the names it may define from removal. Hats and
/// children (`a//b`) are reduced to their top-level name.
pub fn names_a_file_may_define(text: &str) -> Vec<String> {
    let mut out: Vec<String> = declared_profiles(text).into_iter().map(|d| d.name).collect();
    for line in strip_comments(text).lines() {
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
mod may_define_tests {
    use super::names_a_file_may_define as f;

    #[test]
    fn broken_files_still_name_their_profiles() {
        assert_eq!(f("profile custom.a { /tmp/** rwzz, }"), ["custom.a"]);
        assert_eq!(f("profile custom.a {\n /tmp/** rw,\n"), ["custom.a"]);
        assert_eq!(f("  profile \"custom.q x\" flags=(complain) {"), ["custom.q x"]);
        assert_eq!(f("/usr/bin/foo {\n  garbage ,,,\n"), ["/usr/bin/foo"]);
        assert_eq!(f("profile a//hat {}\n# profile commented {}\n"), ["a"]);
        assert!(f("just words, no header\n").is_empty());
        assert!(f("").is_empty());
    }
}

/// Is the attachment pattern `s` inside an allowed-attachment glob (used
/// only where the parser leaves no compiled policy to judge)? In the glob,
/// `**` matches anything, `*` anything but `/`, `?` one byte but `/`,
/// `{a,b}` either. The attachment is a pattern too: `{a,b}` in it must be
/// covered on every side; a glob `*` covers plain bytes, `?` and a lone `*`
/// of it (never `**`, a class `[…]`, an escape or a variable, which may
/// match `/`), a glob `?` a plain byte or `?`, and only `**` covers the rest.
/// So `/usr/bin/*` is inside `/usr/bin/*` and `/usr/**`; `/usr/bin/**` and
/// `/**` are inside neither.
pub fn glob_covers(glob: &str, s: &str) -> bool {
    /// The attachment's units: (bytes, kind) with kind 0 plain, 1 `/`,
    /// 2 `?`, 3 lone `*`, 4 anything else (`**`, classes, escapes, `@`).
    fn units(s: &[u8]) -> Vec<(u8, u8)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            let kind = match c {
                b'/' => 1,
                b'?' => 2,
                b'*' if s.get(i + 1) == Some(&b'*') => {
                    while s.get(i + 1) == Some(&b'*') {
                        i += 1;
                    }
                    4
                }
                b'*' => 3,
                b'[' | b']' | b'\\' | b'@' | b'{' | b'}' | b',' => 4,
                _ => 0,
            };
            out.push((c, kind));
            i += 1;
        }
        out
    }
    fn covers(p: &[u8], n: &[(u8, u8)]) -> bool {
        // memo[i][j]: the glob from i covers the units from j.
        let mut memo = vec![vec![false; n.len() + 1]; p.len() + 1];
        memo[p.len()][n.len()] = true;
        for i in (0..p.len()).rev() {
            for j in (0..=n.len()).rev() {
                let any = p[i] == b'*' && p.get(i + 1) == Some(&b'*');
                memo[i][j] = if any {
                    let skip = (i + 2).min(p.len());
                    (j..=n.len()).any(|k| memo[skip][k])
                } else if p[i] == b'*' {
                    let mut k = j;
                    let mut ok = memo[i + 1][j];
                    while !ok && k < n.len() && matches!(n[k].1, 0 | 2 | 3) {
                        k += 1;
                        ok = memo[i + 1][k];
                    }
                    ok
                } else if j == n.len() {
                    false
                } else if p[i] == b'?' {
                    matches!(n[j].1, 0 | 2) && memo[i + 1][j + 1]
                } else {
                    n[j].0 == p[i] && matches!(n[j].1, 0 | 1) && memo[i + 1][j + 1]
                };
            }
        }
        memo[0][0]
    }
    use super::attach::{MAX_ALTS, expand};
    // An attachment this long, or of this many alternatives, is not judged
    // from its text: it is refused.
    const MAX_ATTACHMENT: usize = 1024;
    const MAX_ATTACHMENT_ALTS: usize = 64;
    if s.len() > MAX_ATTACHMENT {
        return false;
    }
    let mut globs = Vec::new();
    expand(glob, &mut globs, MAX_ALTS);
    let mut alts = Vec::new();
    expand(s, &mut alts, MAX_ATTACHMENT_ALTS);
    alts.len() <= MAX_ATTACHMENT_ALTS
        && alts.iter().all(|a| {
            let n = units(a.as_bytes());
            globs.iter().any(|g| covers(g.as_bytes(), &n))
        })
}

/// The first profile of `text` that attaches outside `allowed`, as a
/// refusal message.
pub fn attachment_violation(text: &str, allowed: &[String]) -> Option<String> {
    declared_profiles(text).into_iter().find_map(|d| {
        let a = d.attachment?;
        (!allowed.iter().any(|g| glob_covers(g, &a))).then(|| {
            format!(
                "profile `{}` attaches to {} which allowed_attachments ({}) does not cover",
                crate::escape::text(&d.name),
                crate::escape::text(&a),
                allowed.join(", ")
            )
        })
    })
}

#[cfg(test)]
mod attachment_tests {
    use super::*;

    #[test]
    fn attachments_and_globs() {
        let d = declared_profiles("profile x /usr/sbin/sshd flags=(complain) {\n}\n/usr/bin/y {\n}\nprofile z {\n}\n");
        let a: Vec<Option<&str>> = d.iter().map(|d| d.attachment.as_deref()).collect();
        assert_eq!(a, [Some("/usr/sbin/sshd"), Some("/usr/bin/y"), None]);
        assert!(glob_covers("/usr/bin/*", "/usr/bin/*"));
        assert!(glob_covers("/usr/**", "/usr/bin/x"));
        assert!(!glob_covers("/usr/bin/*", "/usr/bin/sub/x"));
        assert!(!glob_covers("/usr/**", "/**"));
        assert!(!glob_covers("/usr/local/bin/*", "/usr/local/bin/**"));
        assert!(!glob_covers("/usr/local/bin/?", "/usr/local/bin/*"));
        assert!(!glob_covers("/usr/local/bin/*", "/usr/local/bin/[^a]"));
        assert!(glob_covers("/usr/local/bin/**", "/usr/local/bin/[^a]"));
        assert!(glob_covers("/usr/local/bin/*", "/usr/local/bin/{a,b}"));
        assert!(!glob_covers("/usr/local/bin/*", "/usr/local/bin/{a,../sbin/x}"));
        assert!(glob_covers("/opt/**", "/opt/a/**"));
        assert!(glob_covers("/opt/*/x", "/opt/a*b?/x"));
        assert!(glob_covers("/opt/{a,b}/**", "/opt/b/x"));
        let allowed = vec!["/opt/**".to_string(), "/usr/local/bin/*".to_string()];
        let why = attachment_violation("profile evil /usr/sbin/sshd {\n  deny /** rwx,\n}\n", &allowed).unwrap();
        assert!(why.contains("/usr/sbin/sshd") && why.contains("/opt/**"), "{why}");
        assert_eq!(attachment_violation("profile ok /opt/app/bin/x {\n}\n", &allowed), None);
        assert_eq!(attachment_violation("profile byname {\n}\n", &allowed), None);
    }
}
