//! The allowed-attachment check where the parser leaves no compiled policy
//! to judge: an attachment pattern read from the text against the
//! configured globs.

use super::scan::declared_profiles;

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
mod tests {
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
