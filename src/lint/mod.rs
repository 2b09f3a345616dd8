//! Profile lint: profiles the parser accepts that do not do what their
//! author most likely thinks, on this host. Warnings, never refusals: a
//! lint never blocks a load. Each has a short name; a file silences some
//! with a line of its own (`# armord: lint-off no-abi, deny-in-complain`),
//! and the configuration silences them everywhere (`[lint] off`).
//!
//! Pure: the profile's text and what is known of the host in, lints out.

#[cfg(test)]
mod tests;

use crate::apparmor::{Mode, blank_comments, declared_profiles};
use std::collections::BTreeSet;

/// Every lint, by name (the configuration's schema names them).
pub const NAMES: &[&str] = crate::config::LINT_NAMES;

/// The line that silences lints in a file.
pub const OFF_MARK: &str = "# armord: lint-off";

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lint {
    pub name: &'static str,
    /// 1-based, when one line is the cause.
    pub line: Option<u32>,
    pub message: String,
    /// The one-line fix.
    pub fix: String,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}; fix: {}", self.name, self.message, self.fix)
    }
}

/// What is known of the host.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Profiles loaded in the kernel, by name.
    pub loaded: LoadedList,
    /// The kernel's features (`a`, `a/b`); empty: not known.
    pub features: BTreeSet<String>,
    /// What the parser assumes without an `abi` line, as said to people.
    pub default_abi: String,
}

impl Host {
    /// The container runtimes AppArmor confines here (a loaded profile of
    /// their name, as AppArmor 4 ships).
    pub fn confined_runtimes(&self) -> Vec<&'static str> {
        ["runc", "crun"]
            .into_iter()
            .filter(|r| self.loaded.contains(r))
            .collect()
    }
}

/// The kernel's list of loaded profiles as it reads (`name (mode)` a
/// line), asked about a few names: kept as text, not parsed into a set
/// of every name (a lint after each change costs a search or two, not a
/// set of 10,000 names). Asked about many (every profile linted at
/// start), it makes the set once: searching the text for each would cost
/// the square of the profile count.
#[derive(Debug, Clone, Default)]
pub struct LoadedList {
    /// The list, each line after a newline.
    text: String,
    /// Searches so far; past [`SEARCHES_BEFORE_SET`], the set.
    searches: std::cell::Cell<u32>,
    set: std::cell::OnceCell<std::collections::HashSet<String>>,
}

/// Searches of the text before the set of names is made instead.
const SEARCHES_BEFORE_SET: u32 = 16;

/// The name a kernel list line gives, read as the list's parser reads it
/// (the name before the last ` (`, the mode closed by `)`).
fn line_name(line: &str) -> Option<&str> {
    line.rsplit_once(" (")
        .filter(|(n, m)| !n.is_empty() && m.ends_with(')'))
        .map(|(n, _)| n)
}

impl LoadedList {
    pub fn from_text(text: &str) -> Self {
        LoadedList {
            text: format!("\n{text}"),
            ..Default::default()
        }
    }

    /// Whether a line names `name`.
    pub fn contains(&self, name: &str) -> bool {
        if name.is_empty() || name.contains('\n') {
            return false;
        }
        if let Some(set) = self.set.get() {
            return set.contains(name);
        }
        let searches = self.searches.get() + 1;
        self.searches.set(searches);
        if searches > SEARCHES_BEFORE_SET {
            let set = self
                .set
                .get_or_init(|| self.text.split('\n').filter_map(line_name).map(str::to_owned).collect());
            return set.contains(name);
        }
        let needle = format!("\n{name} (");
        self.text.match_indices(&needle).any(|(at, _)| {
            let line = self.text[at + 1..].split('\n').next().unwrap_or("");
            line_name(line) == Some(name)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
    }

    pub fn insert(&mut self, name: String) {
        if !self.text.ends_with('\n') {
            self.text.push('\n');
        }
        self.text.push_str(&name);
        self.text.push_str(" (enforce)\n");
        if let Some(set) = self.set.get_mut() {
            set.insert(name);
        }
    }
}

impl FromIterator<String> for LoadedList {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut l = LoadedList::default();
        for n in names {
            l.insert(n);
        }
        l
    }
}

impl Host {
    /// This host as the configuration points at it: the kernel's loaded
    /// profiles and features (securityfs), and the ABI the parser assumes.
    pub fn of(cfg: &crate::config::Config) -> Host {
        let loaded = std::fs::read_to_string(cfg.securityfs.join("profiles"))
            .map(|t| LoadedList::from_text(&t))
            .unwrap_or_default();
        let features = crate::apparmor::features::kernel_features(&cfg.securityfs.join("features"), 2);
        let default_abi = match cfg
            .parser
            .features_file
            .clone()
            .or_else(crate::apparmor::default_features_file)
        {
            Some(f) => format!("the features in {}", f.display()),
            None => "the running kernel's features".to_owned(),
        };
        Host {
            loaded,
            features,
            default_abi,
        }
    }
}

/// The lints of a file armord reads: a spec or a profile, with what the
/// file and the configuration silence. `complain`: loaded in complain
/// mode whatever it declares.
pub fn file(path: &std::path::Path, text: &str, complain: bool, host: &Host, cfg_off: &BTreeSet<String>) -> Vec<Lint> {
    let mut off = silenced(text);
    off.extend(cfg_off.iter().cloned());
    if path.to_string_lossy().ends_with(crate::spec::SPEC_SUFFIX) {
        let Ok(s) = crate::spec::Spec::parse(text) else {
            return Vec::new();
        };
        let mut out = spec(&s, |p| std::path::Path::new(p).exists(), &off);
        let rendered = s.render();
        let complain = complain || matches!(s.mode.as_str(), "complain" | "trial");
        // The rendered text's own deny rules are the runtime's defaults.
        out.extend(
            profile(&rendered, complain, host, &off)
                .into_iter()
                .filter(|l| l.name != "deny-in-complain"),
        );
        return out;
    }
    profile(text, complain, host, &off)
}

/// The lints a file silences.
pub fn silenced(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(OFF_MARK))
        .flat_map(|rest| {
            rest.split([',', ' '])
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

/// Lines (1-based) with the comments blanked, for the rule checks.
fn rule_lines(text: &str) -> Vec<(u32, String)> {
    blank_comments(text)
        .lines()
        .enumerate()
        .map(|(i, l)| (u32::try_from(i + 1).unwrap_or(u32::MAX), l.trim().to_owned()))
        .filter(|(_, l)| !l.is_empty())
        .collect()
}

/// A profile file's lints. `complain`: it is loaded in complain mode
/// whatever it declares (forced by the configuration, or in trial); `off`:
/// the names silenced by the configuration.
pub fn profile(text: &str, complain: bool, host: &Host, off: &BTreeSet<String>) -> Vec<Lint> {
    let lines = rule_lines(text);
    let declared = declared_profiles(text);
    let mut out = Vec::new();
    let in_complain = complain || declared.iter().any(|p| p.mode == Mode::Complain);
    if in_complain && let Some((n, _)) = lines.iter().find(|(_, l)| l.starts_with("deny ")) {
        let count = lines.iter().filter(|(_, l)| l.starts_with("deny ")).count();
        out.push(Lint {
            name: "deny-in-complain",
            line: Some(*n),
            message: format!("{count} deny rules in a profile loaded in complain mode: they still block"),
            fix: "drop the deny rules while the profile complains, or keep them knowing they block".into(),
        });
    }
    // A container profile: one that attaches to no executable.
    let for_containers = declared.iter().any(|p| p.attachment.is_none());
    if for_containers {
        for rt in host.confined_runtimes() {
            if !lets_signal(&lines, rt) {
                out.push(Lint {
                    name: "runtime-signal",
                    line: None,
                    message: format!(
                        "{rt} runs confined on this host, and this container profile does not let it signal the container: the runtime cannot stop it"
                    ),
                    fix: format!("add `signal (receive) peer={rt},`"),
                });
            }
        }
    }
    let own: BTreeSet<&str> = declared.iter().map(|p| p.name.as_str()).collect();
    for (n, l) in &lines {
        for peer in peers(l) {
            let top = crate::apparmor::top_level(&peer);
            let known = peer == "unconfined" || own.contains(top) || host.loaded.contains(top);
            if peer.contains("//&") {
                out.push(Lint {
                    name: "peer-not-loaded",
                    line: Some(*n),
                    message: format!("peer={peer} names a stack: it matches that exact stack only"),
                    fix: "name the profile alone (peer=NAME) and let stacking add the rest".into(),
                });
            } else if !known && !peer.contains(['*', '?', '[', '{', '@']) && !host.loaded.is_empty() {
                out.push(Lint {
                    name: "peer-not-loaded",
                    line: Some(*n),
                    message: format!("peer={peer} names a profile that is not loaded here; the rule matches nothing"),
                    fix: "check the name against /sys/kernel/security/apparmor/profiles".into(),
                });
            }
        }
    }
    if !lines
        .iter()
        .any(|(_, l)| l.starts_with("abi ") || l.starts_with("abi<"))
    {
        out.push(Lint {
            name: "no-abi",
            line: None,
            message: format!(
                "no abi line: the parser assumes {}, and a parser update can change what this profile means",
                host.default_abi
            ),
            fix: "add `abi <abi/3.0>,` (or <abi/4.0>) before the profile".into(),
        });
    }
    if !host.features.is_empty() {
        for (keyword, feature, what) in UNMEDIATED {
            if host.features.contains(*feature) {
                continue;
            }
            if let Some((n, _)) = lines.iter().find(|(_, l)| starts_rule(l, keyword)) {
                out.push(Lint {
                    name: "unmediated",
                    line: Some(*n),
                    message: format!(
                        "this kernel does not mediate {what} (no {feature} feature): the rule means nothing here"
                    ),
                    fix: "keep it for newer kernels, or drop it; do not count on it on this host".into(),
                });
            }
        }
    }
    out.retain(|l| !off.contains(l.name));
    out
}

/// Rule keywords, the kernel feature that mediates them, and what.
const UNMEDIATED: &[(&str, &str, &str)] = &[
    ("userns", "namespaces", "user namespace creation"),
    ("io_uring", "io_uring", "io_uring"),
    ("mqueue", "ipc", "POSIX message queues"),
    ("unix", "network/af_unix", "fine-grained unix sockets"),
];

/// Does the rule line start with `keyword` (as a rule, maybe qualified)?
fn starts_rule(line: &str, keyword: &str) -> bool {
    let mut words = line.split([' ', ',', '(']).filter(|w| !w.is_empty());
    let mut w = words.next();
    while let Some("audit" | "allow" | "deny" | "owner" | "quiet") = w {
        w = words.next();
    }
    w == Some(keyword)
}

/// The `peer=` labels a line names.
fn peers(line: &str) -> Vec<String> {
    line.split("peer=")
        .skip(1)
        .filter_map(|rest| {
            let v = rest.trim_start_matches(['(', '"']);
            let end = v.find([' ', ',', ')', '"']).unwrap_or(v.len());
            let v = &v[..end];
            (!v.is_empty()).then(|| v.to_owned())
        })
        .collect()
}

/// Does a signal rule let `rt` signal the profile (receive from it)?
fn lets_signal(lines: &[(u32, String)], rt: &str) -> bool {
    lines.iter().any(|(_, l)| {
        if !starts_rule(l, "signal") || l.starts_with("deny ") {
            return false;
        }
        let peer_ok = !l.contains("peer=") || peers(l).iter().any(|p| p == rt);
        let perms_ok = match (l.find('('), l.find(')')) {
            (Some(a), Some(b)) if a < b && !l[..a].contains("set=") => {
                let perms = &l[a + 1..b];
                perms.contains("receive") || perms.contains('r') && !perms.contains("send")
            }
            _ => true,
        };
        peer_ok && perms_ok
    })
}

/// An allow-list spec's lints: programs to run that this host lacks, and
/// deny entries while the spec complains.
pub fn spec(spec: &crate::spec::Spec, exists: impl Fn(&str) -> bool, off: &BTreeSet<String>) -> Vec<Lint> {
    let mut out = Vec::new();
    for p in &spec.exec {
        if !p.contains(['*', '?', '[', '{', '@']) && !exists(p) {
            out.push(Lint {
                name: "spec-exec-missing",
                line: None,
                message: format!("exec {p} does not exist on this host: a container that needs it cannot start"),
                fix: format!("correct the path in exec (ls -l {p})"),
            });
        }
    }
    if matches!(spec.mode.as_str(), "complain" | "trial") && !spec.deny.is_empty() {
        out.push(Lint {
            name: "deny-in-complain",
            line: None,
            message: format!(
                "{} deny entries in a spec loaded in complain mode: they still block",
                spec.deny.len()
            ),
            fix: "drop the deny list while the spec complains, or keep it knowing it blocks".into(),
        });
    }
    out.retain(|l| !off.contains(l.name));
    out
}
