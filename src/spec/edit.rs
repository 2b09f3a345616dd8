//! Additions written into an allow-list spec's text: each list key extended
//! in place (or added at the end when the spec has none), the rest of the
//! text, comments included, left as it is.

use super::Spec;
use std::collections::BTreeSet;

/// The list keys a spec can grow.
pub const LIST_KEYS: &[&str] = &["exec", "read", "write", "capabilities", "network"];

/// `text` with the values of `additions` (key, values) added to its lists;
/// values already listed are not added again. The result must parse as a
/// spec, or the reason it does not is returned.
pub fn add(text: &str, additions: &[(&str, Vec<String>)]) -> Result<String, String> {
    let spec = Spec::parse(text).map_err(|e| e.to_string())?;
    let mut out = text.to_owned();
    for (key, values) in additions {
        let have: BTreeSet<&String> = match *key {
            "exec" => spec.exec.iter().collect(),
            "read" => spec.read.iter().collect(),
            "write" => spec.write.iter().collect(),
            "capabilities" => spec.capabilities.iter().collect(),
            "network" => spec.network.iter().collect(),
            _ => return Err(format!("`{key}` is not a list of a spec")),
        };
        let new: Vec<String> = values
            .iter()
            .filter(|v| !have.contains(v))
            .map(|v| format!("{v:?}"))
            .collect();
        if new.is_empty() {
            continue;
        }
        out = match array_end(&out, key) {
            Some((close, empty, trailing_comma)) => {
                let sep = if empty || trailing_comma { "" } else { ", " };
                format!("{}{sep}{}{}", &out[..close], new.join(", "), &out[close..])
            }
            None => {
                let nl = if out.is_empty() || out.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                format!("{out}{nl}{key} = [{}]\n", new.join(", "))
            }
        };
    }
    Spec::parse(&out).map_err(|e| format!("the spec with the additions does not parse: {e}"))?;
    Ok(out)
}

/// Where the array of top-level `key` closes (the byte of its `]`),
/// whether it is empty, and whether its last item has a trailing comma.
fn array_end(text: &str, key: &str) -> Option<(usize, bool, bool)> {
    let mut at = 0;
    let start = text.lines().find_map(|l| {
        let line_at = at;
        at += l.len() + 1;
        let t = l.trim_start();
        let rest = t.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim_start();
        rest.starts_with('[').then(|| line_at + (l.len() - rest.len()) + 1)
    })?;
    let (mut quote, mut comment, mut escaped) = (None::<char>, false, false);
    let mut last = None::<char>;
    for (i, c) in text[start..].char_indices() {
        if comment {
            comment = c != '\n';
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
                last = Some(c);
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '#' => comment = true,
            ']' => return Some((start + i, last.is_none(), last == Some(','))),
            c if c.is_whitespace() => {}
            c => last = Some(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_grow_in_place_and_comments_stay() {
        let text = "# web\nname = \"custom.w\"\nexec = [\n  \"/bin/a\", # the server\n]\nread = []\n";
        let out = add(
            text,
            &[
                ("exec", vec!["/bin/a".into(), "/bin/b".into()]),
                ("read", vec!["/etc/x".into()]),
                ("capabilities", vec!["net_raw".into()]),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "# web\nname = \"custom.w\"\nexec = [\n  \"/bin/a\", # the server\n\"/bin/b\"]\nread = [\"/etc/x\"]\ncapabilities = [\"net_raw\"]\n"
        );
        let s = Spec::parse(&out).unwrap();
        assert_eq!(s.exec, ["/bin/a", "/bin/b"]);
    }

    #[test]
    fn a_bracket_in_a_string_or_comment_is_not_the_end() {
        let text = "name = \"custom.w\"\nexec = [\"/bin/a\" # ] not yet\n, \"/bin/c\"]\n";
        let out = add(text, &[("exec", vec!["/bin/b".into()])]).unwrap();
        assert_eq!(Spec::parse(&out).unwrap().exec, ["/bin/a", "/bin/c", "/bin/b"]);
    }

    #[test]
    fn what_would_not_parse_is_refused() {
        let text = "name = \"custom.w\"\nexec = [\"/bin/a\"]\n";
        assert!(add(text, &[("read", vec!["relative".into()])]).is_err());
        assert!(add(text, &[("bogus", vec!["x".into()])]).is_err());
    }
}
