//! Process allow-list profiles from a short spec (`NAME.allow.toml` in a
//! sync directory). A spec renders to a profile that starts from the
//! container runtimes' default profile, with its blanket `file,` rule
//! replaced by rules that exclude execution except for the listed programs.
//! Rendering is pure and deterministic.

pub mod edit;

use serde::Deserialize;
use std::fmt::Write;

/// Files with this ending are specs, not profiles.
pub const SPEC_SUFFIX: &str = ".allow.toml";

pub fn is_spec(name: &str) -> bool {
    name.ends_with(SPEC_SUFFIX)
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The profile name.
    pub name: String,
    /// `enforce`, `complain`, or `trial` (complain until the node's
    /// promotion gate enforces it; see `trial`).
    #[serde(default = "enforce")]
    pub mode: String,
    /// Programs that may run (inheriting this profile).
    pub exec: Vec<String>,
    /// Extra paths that may be read but never written.
    #[serde(default)]
    pub read: Vec<String>,
    /// Extra paths that may be read and written.
    #[serde(default)]
    pub write: Vec<String>,
    /// Paths with no access at all.
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Network families (`inet`, `inet6`, `unix`, …).
    #[serde(default)]
    pub network: Vec<String>,
}

fn enforce() -> String {
    "enforce".into()
}

/// What is wrong with a spec: the key (empty for a TOML syntax error) and,
/// where known, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub key: String,
    pub line: Option<u32>,
    pub reason: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "key `{}`: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    /// `FILE:LINE: message` (or `FILE: message`), the form of every
    /// problem armord reports.
    pub fn with_file(&self, file: &std::path::Path) -> String {
        let file = crate::escape::path(file);
        let text = self.to_string();
        let msg = crate::escape::text(&text);
        match self.line {
            Some(l) => format!("{file}:{l}: {msg}"),
            None => format!("{file}: {msg}"),
        }
    }
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        key: key.into(),
        line: None,
        reason: reason.into(),
    }
}

const CAPABILITIES: &[&str] = &[
    "audit_control",
    "audit_read",
    "audit_write",
    "block_suspend",
    "bpf",
    "checkpoint_restore",
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "ipc_lock",
    "ipc_owner",
    "kill",
    "lease",
    "linux_immutable",
    "mac_admin",
    "mac_override",
    "mknod",
    "net_admin",
    "net_bind_service",
    "net_broadcast",
    "net_raw",
    "perfmon",
    "setfcap",
    "setgid",
    "setpcap",
    "setuid",
    "sys_admin",
    "sys_boot",
    "sys_chroot",
    "sys_module",
    "sys_nice",
    "sys_pacct",
    "sys_ptrace",
    "sys_rawio",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "syslog",
    "wake_alarm",
];

const FAMILIES: &[&str] = &[
    "unix",
    "inet",
    "inet6",
    "netlink",
    "packet",
    "bluetooth",
    "can",
    "alg",
    "vsock",
    "xdp",
    "tipc",
    "rds",
    "x25",
    "ax25",
    "appletalk",
    "ipx",
];

/// A path in the allowed forms: absolute, no `..`, no characters that
/// change a rule's meaning (quotes, commas, spaces, braces, `@`, `^`);
/// globbing with `*` and `?`, and `**` except for executables (where a
/// recursive glob would allow running whole trees).
fn check_path(key: &str, p: &str, exec: bool) -> Result<(), SpecError> {
    if !p.starts_with('/') {
        return Err(err(key, format!("{p:?} is not an absolute path")));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(err(key, format!("{p:?} contains `.` or `..`")));
    }
    if let Some(c) = p
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"',{}[]@^#\\$!=<>".contains(*c))
    {
        return Err(err(
            key,
            format!("{p:?} contains {c:?}, which is not allowed in a spec path"),
        ));
    }
    if exec && p.contains("**") {
        return Err(err(key, format!("{p:?}: `**` is not allowed for executables")));
    }
    if exec && p.ends_with('/') {
        return Err(err(key, format!("{p:?} is a directory, not a program")));
    }
    if p == "/" || p == "/**" || p == "/*" {
        return Err(err(key, format!("{p:?} covers the whole file system")));
    }
    Ok(())
}

/// The profile names a spec that does not parse may define: every
/// `name = "…"` (or `'…'`) line, read lexically.
pub fn names_a_spec_may_define(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("name") else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim();
        let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let Some(end) = rest[1..].find(q) else { continue };
        let name = &rest[1..1 + end];
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let spec: Spec = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() as u32 + 1);
            let msg = e.message().trim().to_owned();
            let key = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
                .unwrap_or("")
                .to_owned();
            SpecError { key, line, reason: msg }
        })?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), SpecError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || self.name == "unconfined"
        {
            return Err(err(
                "name",
                format!("{:?} is not a profile name of [A-Za-z0-9._-]", self.name),
            ));
        }
        if !matches!(self.mode.as_str(), "enforce" | "complain" | "trial") {
            return Err(err(
                "mode",
                format!("{:?} is not enforce, complain or trial", self.mode),
            ));
        }
        if self.exec.is_empty() {
            return Err(err("exec", "lists no program: the container could run nothing"));
        }
        for (key, list, exec) in [
            ("exec", &self.exec, true),
            ("read", &self.read, false),
            ("write", &self.write, false),
            ("deny", &self.deny, false),
        ] {
            for (i, p) in list.iter().enumerate() {
                check_path(&format!("{key}[{i}]"), p, exec)?;
            }
        }
        for (i, c) in self.capabilities.iter().enumerate() {
            if !CAPABILITIES.contains(&c.as_str()) {
                return Err(err(
                    format!("capabilities[{i}]"),
                    format!("{c:?} is not a capability name"),
                ));
            }
        }
        for (i, f) in self.network.iter().enumerate() {
            if !FAMILIES.contains(&f.as_str()) {
                return Err(err(format!("network[{i}]"), format!("{f:?} is not a network family")));
            }
        }
        Ok(())
    }

    /// The profile text.
    pub fn render(&self) -> String {
        let n = &self.name;
        let mut o = String::new();
        let flags = if self.mode == "complain" {
            "attach_disconnected,mediate_deleted,complain"
        } else {
            "attach_disconnected,mediate_deleted"
        };
        let _ = writeln!(
            o,
            "# Rendered by armord from {n}{SPEC_SUFFIX}; edit the spec, not this text."
        );
        if self.mode == "trial" {
            let _ = writeln!(o, "{}", crate::trial::MARK);
        }
        let _ = writeln!(o, "abi <abi/3.0>,");
        let _ = writeln!(o, "include <tunables/global>\n");
        let _ = writeln!(o, "profile {n} flags=({flags}) {{");
        o.push_str(BASE_HEAD);
        let _ = writeln!(
            o,
            "  # Container processes may signal and trace each other (as the runtime's default)."
        );
        let _ = writeln!(o, "  signal (send,receive) peer={n},");
        let _ = writeln!(o, "  ptrace (trace,read,tracedby,readby) peer={n},\n");
        o.push_str(BASE_FILES);
        let _ = writeln!(o, "  # The programs that may run; they inherit this profile.");
        for p in sorted(&self.exec) {
            let _ = writeln!(o, "  {p} ix,");
        }
        let sections: [Section; 5] = [
            (&self.read, "Read-only: writes here are denied and logged.", |p| {
                format!("  {p} r,\n  audit deny {p} wl,\n")
            }),
            (&self.write, "Read-write.", |p| format!("  {p} rwlk,\n")),
            (&self.deny, "No access at all, logged.", |p| {
                format!("  audit deny {p} rwlkmx,\n")
            }),
            (&self.capabilities, "Capabilities.", |c| format!("  capability {c},\n")),
            (&self.network, "Network families.", |f| format!("  network {f},\n")),
        ];
        for (items, title, rule) in sections {
            if !items.is_empty() {
                let _ = writeln!(o, "\n  # {title}");
                for item in sorted(items) {
                    o.push_str(&rule(item));
                }
            }
        }
        o.push_str(BASE_TAIL);
        o.push_str("}\n");
        o
    }
}

/// An optional part of a rendered spec: its items, heading and rule per item.
type Section<'a> = (&'a [String], &'static str, fn(&str) -> String);

fn sorted(v: &[String]) -> Vec<&String> {
    let mut s: Vec<&String> = v.iter().collect();
    s.sort();
    s.dedup();
    s
}

/// The runtime default's header parts that armord keeps as they are.
const BASE_HEAD: &str = "  include <abstractions/base>

  # As the runtime's default: unmounting, and signals from the host
  # (unconfined) processes and the runtimes, which AppArmor 4 systems
  # confine in profiles of their own (`runc`, `crun`): without these,
  # `docker stop` or a pod's deletion could not stop the container.
  umount,
  signal (receive) peer=unconfined,
  signal (receive) peer=runc,
  signal (receive) peer=crun,
";

/// The replacement for the default profile's blanket `file,` rule.
const BASE_FILES: &str = "  # The default profile's blanket `file,` rule, minus execution: every path
  # may be read, written, locked and linked, but not executed and not mapped
  # executable. Libraries and the loader may be mapped (m); only the programs
  # listed below may run.
  /** rwlk,
  /{usr/,}lib{,32,64,x32}/** rm,
  /{usr/,}lib/@{multiarch}/** rm,

";

/// The default profile's denials, kept.
const BASE_TAIL: &str = "
  # As the runtime's default: no writes to /proc files and sysctls (but
  # /proc/sys/kernel/shm*), no sysrq or kcore, no mounts, no writes under
  # /sys except the cgroup file system, no firmware, powercap or securityfs.
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,
  deny mount,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,
";

/// Spec additions that would allow these records (for `armorctl suggest --spec`).
pub fn suggest<'r, 'a: 'r>(records: impl IntoIterator<Item = &'r crate::audit::Record<'a>>) -> Vec<String> {
    use std::collections::BTreeSet;
    let (mut exec, mut read, mut write, mut caps, mut net) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    for r in records {
        if !matches!(r.kind.as_ref(), "DENIED" | "ALLOWED" | "KILLED") {
            continue;
        }
        let s = |k: &str| r.str(k).map(|v| v.into_owned()).filter(|v| !v.is_empty());
        let op = s("operation").unwrap_or_default();
        let mask = s("denied").or_else(|| s("requested")).unwrap_or_default();
        if let Some(cap) = s("capname").filter(|_| op == "capable") {
            caps.insert(cap);
        } else if let Some(f) = s("family").filter(|f| f != "unix" || op != "exec") {
            net.insert(f);
        } else if let Some(name) = s("name") {
            if op == "exec" || mask.contains('x') {
                exec.insert(name);
            } else if mask.contains(['w', 'a', 'c', 'd']) {
                write.insert(name);
            } else if mask.contains('r') {
                read.insert(name);
            }
        }
    }
    let line = |k: &str, v: &BTreeSet<String>| {
        (!v.is_empty()).then(|| {
            format!(
                "{k} = [{}]",
                v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
            )
        })
    };
    [
        line("exec", &exec),
        line("read", &read),
        line("write", &write),
        line("capabilities", &caps),
        line("network", &net),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("name = \"x\"\nexec = [\"/bin/a\"]\nbogus = 1\n", "key `bogus`:"),
            ("exec = [\"/bin/a\"]\n", "key `name`:"),
            (
                "name = \"x\"\nexec = [\"bin/a\"]\n",
                "key `exec[0]`: \"bin/a\" is not an absolute path",
            ),
            (
                "name = \"x\"\nexec = [\"/usr/**\"]\n",
                "key `exec[0]`: \"/usr/**\": `**` is not allowed for executables",
            ),
            (
                "name = \"x\"\nexec = [\"/a\"]\nwrite = [\"/tmp/../etc\"]\n",
                "key `write[0]`:",
            ),
            ("name = \"x\"\nexec = [\"/a\"]\nread = [\"/a,b\"]\n", "key `read[0]`:"),
            ("name = \"x\"\nexec = [\"/a\"]\ndeny = [\"/**\"]\n", "key `deny[0]`:"),
            (
                "name = \"x\"\nexec = [\"/a\"]\ncapabilities = [\"everything\"]\n",
                "key `capabilities[0]`:",
            ),
            (
                "name = \"x\"\nexec = [\"/a\"]\nnetwork = [\"inet7\"]\n",
                "key `network[0]`:",
            ),
            ("name = \"x\"\nexec = [\"/a\"]\nmode = \"strict\"\n", "key `mode`:"),
            ("name = \"x y\"\nexec = [\"/a\"]\n", "key `name`:"),
            ("name = \"x\"\nexec = []\n", "key `exec`:"),
        ];
        for (text, want) in cases {
            let e = Spec::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn rendering_is_deterministic_and_orders_lists() {
        let a = Spec::parse("name = \"custom.a\"\nexec = [\"/b\", \"/a\", \"/a\"]\nnetwork = [\"inet6\", \"inet\"]\n")
            .unwrap();
        let b = Spec::parse("name = \"custom.a\"\nexec = [\"/a\", \"/b\"]\nnetwork = [\"inet\", \"inet6\"]\n").unwrap();
        assert_eq!(a.render(), b.render());
        let r = a.render();
        assert!(r.contains("  /a ix,\n  /b ix,\n"), "{r}");
        assert!(!r.contains("\n  file,"), "the blanket file rule must be gone");
    }

    #[test]
    fn a_trial_spec_renders_the_mark_and_loads_in_neither_mode_by_itself() {
        let t = Spec::parse("name = \"custom.t\"\nmode = \"trial\"\nexec = [\"/a\"]\n").unwrap();
        let r = t.render();
        assert!(crate::trial::declared(&r), "{r}");
        assert!(!r.contains("complain"), "{r}");
        let e = Spec::parse("name = \"custom.t\"\nexec = [\"/a\"]\n").unwrap().render();
        assert!(!crate::trial::declared(&e));
    }
}
