//! Suggested rules: the AppArmor rules that would allow a set of records.
//! File rules get the union of masks per path; the output is de-duplicated
//! and sorted, ready to paste into the profile.

use super::Record;
use std::collections::{BTreeMap, BTreeSet};

/// Quote and escape a path so that it matches only itself.
pub fn path_literal(p: &str) -> String {
    quote_if_needed(escape_glob(p))
}

/// A path with every glob character escaped.
pub fn escape_glob(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 2);
    for c in p.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '^' | '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A path pattern quoted where the rule syntax needs it.
pub fn quote_if_needed(out: String) -> String {
    if out.chars().any(|c| c.is_whitespace() || c == ',' || c == '#') || out.is_empty() {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// A bare value that the rule syntax accepts unquoted; quoted otherwise.
fn word(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c)) {
        v.to_owned()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

const FILE_OPS: &[&str] = &[
    "open",
    "mknod",
    "mkdir",
    "rmdir",
    "unlink",
    "rename_src",
    "rename_dest",
    "link",
    "symlink",
    "truncate",
    "chmod",
    "chown",
    "getattr",
    "setattr",
    "exec",
    "file_mmap",
    "file_perm",
    "file_lock",
    "file_receive",
    "file_inherit",
];

fn file_perms(mask: &str, exec_mode: bool) -> BTreeSet<char> {
    let mut out = BTreeSet::new();
    for c in mask.chars() {
        match c {
            'r' => drop(out.insert('r')),
            'w' | 'c' | 'd' => drop(out.insert('w')),
            'a' => drop(out.insert('a')),
            'l' => drop(out.insert('l')),
            'k' => drop(out.insert('k')),
            'm' => drop(out.insert('m')),
            'x' => drop(out.insert('x')),
            _ => {}
        }
    }
    if exec_mode {
        out.insert('x');
    }
    out
}

pub fn perm_string(p: &BTreeSet<char>) -> String {
    let mut s = String::new();
    for c in ['r', 'w', 'a', 'l', 'k', 'm'] {
        if p.contains(&c) && !(c == 'a' && p.contains(&'w')) {
            s.push(c);
        }
    }
    if p.contains(&'x') {
        s.push_str("ix");
    }
    s
}

/// The rules for these records (one profile's). Records that need no rule
/// (STATUS, HINT) or that no rule can express are skipped.
pub fn rules<'r, 'a: 'r>(records: impl IntoIterator<Item = &'r Record<'a>>) -> Vec<String> {
    let mut files: BTreeMap<String, BTreeSet<char>> = BTreeMap::new();
    let mut other: BTreeSet<String> = BTreeSet::new();
    for r in records {
        match rule_for(r) {
            Some(One::File(name, perms)) => files.entry(name).or_default().extend(perms),
            Some(One::Rule(rule)) => {
                other.insert(rule);
            }
            None => {}
        }
    }
    let mut out: Vec<String> = files
        .iter()
        .map(|(p, m)| format!("{} {},", path_literal(p), perm_string(m)))
        .collect();
    out.extend(other);
    out.sort();
    out.dedup();
    out
}

/// A record's fields as non-empty strings.
struct Fields<'r, 'a>(&'r Record<'a>);

impl Fields<'_, '_> {
    fn get(&self, k: &str) -> Option<String> {
        self.0.str(k).map(|v| v.into_owned()).filter(|v| !v.is_empty())
    }
}

/// What one record asks for: file permissions on a path (merged per path),
/// or a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum One {
    /// The path as the record names it, and the permissions.
    File(String, BTreeSet<char>),
    Rule(String),
}

/// The rule one record asks for, by its operation and class; `None` for a
/// record of a kind that needs none (STATUS, HINT) or that no rule
/// expresses.
pub fn rule_for(r: &Record) -> Option<One> {
    if !matches!(r.kind.as_ref(), "DENIED" | "ALLOWED" | "AUDIT" | "KILLED") {
        return None;
    }
    let f = &Fields(r);
    let op = f.get("operation").unwrap_or_default();
    let mask = f
        .get("denied")
        .or_else(|| f.get("requested"))
        .or_else(|| f.get("mask"))
        .unwrap_or_default();
    let class = f.get("class").unwrap_or_default();
    let rule = if op == "capable" || class == "cap" {
        format!("capability {},", f.get("capname")?)
    } else if op == "signal" {
        let mut rule = format!("signal ({})", mask.replace(' ', ", "));
        if let Some(sig) = f.get("signal") {
            rule.push_str(&format!(" set=({sig})"));
        }
        if let Some(peer) = f.get("peer") {
            rule.push_str(&format!(" peer={}", word(&peer)));
        }
        rule + ","
    } else if op == "ptrace" {
        let mut rule = format!("ptrace ({})", mask.replace(' ', ", "));
        if let Some(peer) = f.get("peer").or_else(|| f.get("target")) {
            rule.push_str(&format!(" peer={}", word(&peer)));
        }
        rule + ","
    } else if op.starts_with("dbus_") {
        dbus_rule(f, &op, &mask)
    } else if matches!(op.as_str(), "mount" | "remount" | "umount" | "pivotroot") {
        mount_rule(f, &op)?
    } else if op == "change_profile" || op == "change_onexec" {
        let t = f.get("target").or_else(|| f.get("name"))?;
        format!("change_profile -> {},", word(&t))
    } else if class == "net" || f.get("family").is_some() {
        network_rule(f, &mask)?
    } else if class == "file" || class.is_empty() && FILE_OPS.contains(&op.as_str()) {
        let name = f.get("name")?;
        let perms = file_perms(&mask, op == "exec");
        return (!perms.is_empty()).then_some(One::File(name, perms));
    } else {
        return None;
    };
    Some(One::Rule(rule))
}

/// A `dbus` rule: bus, path, interface and member, and the peer (or the
/// name bound).
fn dbus_rule(f: &Fields, op: &str, mask: &str) -> String {
    let mut rule = format!("dbus ({})", if mask.is_empty() { "send" } else { mask });
    for key in ["bus", "path", "interface", "member"] {
        if let Some(v) = f.get(key) {
            rule.push_str(&format!(" {key}={}", word(&v)));
        }
    }
    if op == "dbus_bind" {
        if let Some(n) = f.get("name") {
            rule.push_str(&format!(" name={}", word(&n)));
        }
    } else {
        let mut peer = Vec::new();
        if let Some(n) = f.get("name") {
            peer.push(format!("name={}", word(&n)));
        }
        if let Some(l) = f.get("peer_label").or_else(|| f.get("peer_profile")) {
            peer.push(format!("label={}", word(&l)));
        }
        if !peer.is_empty() {
            rule.push_str(&format!(" peer=({})", peer.join(", ")));
        }
    }
    rule + ","
}

/// A `mount`, `umount` or `pivot_root` rule.
fn mount_rule(f: &Fields, op: &str) -> Option<String> {
    let mut rule = match op {
        "umount" => return Some(format!("umount {},", path_literal(&f.get("name")?))),
        "pivotroot" => {
            let mut rule = "pivot_root".to_owned();
            if let Some(src) = f.get("srcname") {
                rule.push_str(&format!(" oldroot={}", path_literal(&src)));
            }
            rule
        }
        _ => {
            let mut rule = "mount".to_owned();
            if let Some(flags) = f.get("flags") {
                rule.push_str(&format!(" options=({})", flags.replace(' ', "")));
            }
            if let Some(t) = f.get("fstype") {
                rule.push_str(&format!(" fstype={}", word(&t)));
            }
            if let Some(src) = f.get("srcname") {
                rule.push_str(&format!(" {}", path_literal(&src)));
            }
            if let Some(n) = f.get("name") {
                rule.push_str(&format!(" -> {}", path_literal(&n)));
            }
            return Some(rule + ",");
        }
    };
    if let Some(n) = f.get("name") {
        rule.push_str(&format!(" {}", path_literal(&n)));
    }
    Some(rule + ",")
}

/// A `unix` or `network` rule.
fn network_rule(f: &Fields, mask: &str) -> Option<String> {
    let family = f.get("family").unwrap_or_default();
    if family == "unix" {
        let mut rule = format!("unix ({})", mask.replace(' ', ", "));
        if let Some(t) = f.get("sock_type") {
            rule.push_str(&format!(" type={t}"));
        }
        Some(rule + ",")
    } else if !family.is_empty() {
        let mut rule = format!("network {family}");
        if let Some(t) = f.get("sock_type").filter(|t| !t.starts_with("unknown")) {
            rule.push_str(&format!(" {t}"));
        }
        Some(rule + ",")
    } else {
        None
    }
}

/// Insert `rules` at the end of the block of top-level profile `name` in a
/// profile file. `None` when the profile's block cannot be found.
pub fn insert_rules(text: &str, name: &str, rules: &[String]) -> Option<String> {
    insert_block(text, name, "suggested by armorctl", rules)
}

/// Insert `rules` under the comment `# {header}` at the end of the block of
/// top-level profile `name`. `None` when the block cannot be found.
pub fn insert_block(text: &str, name: &str, header: &str, rules: &[String]) -> Option<String> {
    let candidates = [
        format!("profile {name} "),
        format!("profile {name}{{"),
        format!("profile \"{name}\""),
        format!("{name} "),
    ];
    let start = candidates.iter().filter_map(|c| text.find(c.as_str())).min()?;
    let open = start + text[start..].find('{')?;
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let at = open + i;
                    let mut out = String::with_capacity(text.len() + rules.len() * 40);
                    out.push_str(&text[..at]);
                    out.push_str(&format!("\n  # {header}\n"));
                    for r in rules {
                        out.push_str("  ");
                        out.push_str(r);
                        out.push('\n');
                    }
                    out.push_str(&text[at..]);
                    return Some(out);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::parse;

    fn suggest(lines: &[&str]) -> Vec<String> {
        let recs: Vec<Record> = lines.iter().map(|l| parse(l).unwrap()).collect();
        rules(&recs)
    }

    #[test]
    fn file_masks_union_per_path() {
        let r = suggest(&[
            r#"apparmor="DENIED" operation="open" profile="p" name="/etc/a" requested_mask="r" denied_mask="r""#,
            r#"apparmor="DENIED" operation="open" profile="p" name="/etc/a" requested_mask="wc" denied_mask="wc""#,
            r#"apparmor="DENIED" operation="exec" profile="p" name="/bin/sh" requested_mask="x" denied_mask="x""#,
            r#"apparmor="DENIED" operation="open" profile="p" name="/tmp/a b*" requested_mask="a" denied_mask="a""#,
            r#"apparmor="STATUS" operation="profile_load" name="p""#,
        ]);
        assert_eq!(r, ["\"/tmp/a b\\*\" a,", "/bin/sh ix,", "/etc/a rw,"]);
    }

    #[test]
    fn every_rule_kind() {
        let r = suggest(&[
            r#"apparmor="DENIED" operation="capable" class="cap" profile="p" capability=13 capname="net_raw""#,
            r#"apparmor="DENIED" operation="create" class="net" profile="p" family="inet" sock_type="raw" protocol=1 requested="create" denied="create""#,
            r#"apparmor="DENIED" operation="connect" class="net" profile="p" family="unix" sock_type="stream" requested="connect" denied="connect""#,
            r#"apparmor="DENIED" operation="signal" profile="p" requested_mask="send" denied_mask="send" signal=kill peer="unconfined""#,
            r#"apparmor="DENIED" operation="ptrace" profile="p" requested_mask="read" denied_mask="read" peer="unconfined""#,
            r#"apparmor="DENIED" operation="dbus_method_call" bus="system" path="/org/x" interface="org.x.I" member="Get" mask="send" name="org.x" label="p" peer_label="unconfined""#,
            r#"apparmor="DENIED" operation="mount" info="failed flags match" error=-13 profile="p" name="/mnt/" fstype="ext4" srcname="/dev/sda1" flags="rw, nosuid""#,
            r#"apparmor="DENIED" operation="change_profile" profile="p" name="q" target="q""#,
        ]);
        let want = [
            "capability net_raw,",
            "change_profile -> q,",
            "dbus (send) bus=system path=/org/x interface=org.x.I member=Get peer=(name=org.x, label=unconfined),",
            "mount options=(rw,nosuid) fstype=ext4 /dev/sda1 -> /mnt/,",
            "network inet raw,",
            "ptrace (read) peer=unconfined,",
            "signal (send) set=(kill) peer=unconfined,",
            "unix (connect) type=stream,",
        ];
        assert_eq!(r, want);
    }

    #[test]
    fn mount_family_and_bind_rules() {
        let r = suggest(&[
            r#"apparmor="DENIED" operation="umount" profile="p" name="/mnt/x/""#,
            r#"apparmor="DENIED" operation="umount" profile="p""#,
            r#"apparmor="DENIED" operation="pivotroot" profile="p" name="/new/" srcname="/old/""#,
            r#"apparmor="DENIED" operation="remount" profile="p" name="/srv/" flags="ro""#,
            r#"apparmor="DENIED" operation="dbus_bind" bus="session" name="org.y" mask="bind" label="p""#,
            r#"apparmor="DENIED" operation="change_onexec" profile="p" name="z""#,
            r#"apparmor="DENIED" operation="capable" class="cap" profile="p" capability=13"#,
            r#"apparmor="DENIED" operation="create" class="net" profile="p" sock_type="raw""#,
        ]);
        let want = [
            "change_profile -> z,",
            "dbus (bind) bus=session name=org.y,",
            "mount options=(ro) -> /srv/,",
            "pivot_root oldroot=/old/ /new/,",
            "umount /mnt/x/,",
        ];
        assert_eq!(r, want);
    }

    #[test]
    fn insert_into_the_right_block() {
        let text =
            "abi <abi/3.0>,\nprofile other { }\nprofile custom.x flags=(complain) {\n  /a r,\n  profile child { }\n}\n";
        let out = insert_rules(text, "custom.x", &["/b r,".to_owned()]).unwrap();
        assert!(
            out.ends_with("  profile child { }\n\n  # suggested by armorctl\n  /b r,\n}\n"),
            "{out}"
        );
        assert!(insert_rules(text, "missing", &[]).is_none());
    }
}
