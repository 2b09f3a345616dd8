//! What armord refuses in a profile's text before the parser runs: an
//! include (or abi) outside the system's policy, and a profile or hat name
//! with an escape or control character (which `--names` would misreport).

use super::lexical::blank_comments;

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
    let code = blank_comments(text);
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
    for (n, code) in blank_comments(text).lines().enumerate() {
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
    fn long_include_runs_are_read_in_linear_time() {
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
}
