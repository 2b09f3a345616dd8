//! The writer's bounds, judged from what the parser compiled: which names a
//! file defines (children and hats only of its own profiles), the mode of
//! every profile in it, and what each attaches to. The plan then holds the
//! top-level names to the prefix, `takeover` and the reserved names.
//!
//! Only where the parser leaves no compiled policy (a stand-in parser in
//! tests) are modes and attachments read from a scan of the text, and then
//! only when the scan and the parser's `--names` agree on the profiles.

use super::names::bad_name;
use crate::apparmor::{CompiledProfile, Globs, Mode, Outside, dfa_within, name_within};
use crate::config::ForcedMode;

/// The bounds a validation judges by.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// `mode = "enforce"`: every profile, children and hats too, enforces.
    pub enforce: bool,
    /// `allowed_attachments`, as written and as a matcher.
    pub allowed: Option<(Vec<String>, Globs)>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::new(ForcedMode::AsWritten, None)
    }
}

/// The kernel's base name of a profile: what follows the last `//` of its
/// full name, found as the kernel finds it (`a///usr/bin/x` → `/usr/bin/x`).
pub fn base_name(name: &str) -> &str {
    let mut rest = name;
    while let Some(at) = rest.find("//") {
        rest = &rest[at + 2..];
    }
    rest
}

impl Bounds {
    pub fn new(mode: ForcedMode, allowed: Option<Vec<String>>) -> Self {
        Bounds {
            enforce: mode == ForcedMode::Enforce,
            allowed: allowed.map(|a| {
                let g = Globs::new(&a);
                (a, g)
            }),
        }
    }

    /// The name rules for every name of a file (top level, children and
    /// hats): the top-level names, or why the file is refused.
    fn names<'a>(&self, names: impl Iterator<Item = &'a str> + Clone) -> Result<Vec<String>, String> {
        let top: Vec<&str> = names.clone().filter(|n| !n.contains("//")).collect();
        for n in names {
            if let Some(why) = bad_name(n) {
                return Err(why);
            }
            if let Some((parent, _)) = n.split_once("//")
                && !top.contains(&parent)
            {
                return Err(format!(
                    "profile `{}` is a child or hat of `{}`, which this file does not define: a file may add children and hats only to its own profiles",
                    crate::escape::text(n),
                    crate::escape::text(parent)
                ));
            }
        }
        let mut out: Vec<String> = Vec::with_capacity(top.len());
        for t in top {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_owned());
            }
        }
        Ok(out)
    }

    fn outside(&self, name: &str, why: Outside) -> String {
        let allowed = self.allowed.as_ref().map(|(a, _)| a.join(", ")).unwrap_or_default();
        match why {
            Outside::Path(p) => format!(
                "profile `{}` attaches to {} which allowed_attachments ({allowed}) does not cover",
                crate::escape::text(name),
                crate::escape::text(&p),
            ),
            Outside::TooComplex => format!(
                "profile `{}` has an attachment too large to judge against allowed_attachments ({allowed})",
                crate::escape::text(name)
            ),
        }
    }

    fn mode(&self, name: &str, mode: &Mode) -> Result<(), String> {
        if self.enforce && *mode != Mode::Enforce {
            return Err(format!(
                "profile `{}` declares {mode} mode, and mode = \"enforce\" is configured",
                crate::escape::text(name)
            ));
        }
        Ok(())
    }

    /// Judge a file by its compiled policy: its top-level names, or why it
    /// is refused.
    pub fn judge(&self, profiles: &[CompiledProfile]) -> Result<Vec<String>, String> {
        let top = self.names(profiles.iter().map(|p| p.name.as_str()))?;
        for p in profiles {
            self.mode(&p.name, &p.mode)?;
            if let Some((_, globs)) = &self.allowed {
                let within = match &p.xmatch {
                    Some(dfa) => dfa_within(dfa, globs),
                    // A hat is entered by change_hat, never by exec; one
                    // loaded at the top level is matched by name like any.
                    None if p.hat && p.name.contains("//") => Ok(()),
                    None => name_within(base_name(&p.name), globs),
                };
                within.map_err(|why| self.outside(&p.name, why))?;
            }
        }
        Ok(top)
    }

    /// Judge a file by the parser's `--names` and a scan of its text, for a
    /// parser that leaves no compiled policy.
    pub fn judge_scanned(&self, names: &[String], text: &str) -> Result<Vec<String>, String> {
        let top = self.names(names.iter().map(String::as_str))?;
        if !self.enforce && self.allowed.is_none() {
            return Ok(top);
        }
        let declared = crate::apparmor::declared_profiles(text);
        let mut scanned: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
        let mut parsed: Vec<&str> = top.iter().map(String::as_str).collect();
        scanned.sort_unstable();
        scanned.dedup();
        parsed.sort_unstable();
        if scanned != parsed || declared.is_empty() {
            return Err(format!(
                "the parser names profiles {} where a scan of the file finds {}: its modes and attachments cannot be judged",
                crate::escape::text(&parsed.join(", ")),
                crate::escape::text(&scanned.join(", "))
            ));
        }
        for d in &declared {
            self.mode(&d.name, &d.mode)?;
        }
        if let Some((allowed, _)) = &self.allowed
            && let Some(why) = crate::apparmor::attachment_violation(text, allowed)
        {
            return Err(why);
        }
        Ok(top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, mode: Mode) -> CompiledProfile {
        CompiledProfile {
            name: name.into(),
            mode,
            hat: false,
            xmatch: None,
        }
    }

    #[test]
    fn children_and_hats_only_of_the_files_own_profiles() {
        let b = Bounds::default();
        assert_eq!(
            b.judge(&[p("custom.y", Mode::Enforce), p("custom.y//c", Mode::Enforce)]),
            Ok(vec!["custom.y".to_string()])
        );
        let e = b
            .judge(&[p("custom.y", Mode::Enforce), p("nvidia_modprobe//kmod", Mode::Complain)])
            .unwrap_err();
        assert!(
            e.contains("`nvidia_modprobe//kmod` is a child or hat of `nvidia_modprobe`"),
            "{e}"
        );
        assert!(b.judge(&[p("//x", Mode::Enforce)]).is_err());
        assert!(b.judge(&[p("a\nb", Mode::Enforce)]).is_err());
    }

    #[test]
    fn every_profile_enforces_under_mode_enforce() {
        let b = Bounds::new(ForcedMode::Enforce, None);
        for m in [
            Mode::Complain,
            Mode::Kill,
            Mode::Unconfined,
            Mode::Prompt,
            Mode::from_packed(99),
        ] {
            let e = b
                .judge(&[p("custom.a", Mode::Enforce), p("custom.a//h", m.clone())])
                .unwrap_err();
            assert!(
                e.contains("`custom.a//h` declares") && e.contains("mode = \"enforce\""),
                "{e}"
            );
            assert!(Bounds::default().judge(&[p("custom.a", m)]).is_ok());
        }
    }

    #[test]
    fn base_names_as_the_kernel_finds_them() {
        assert_eq!(base_name("a"), "a");
        assert_eq!(base_name("a//b"), "b");
        assert_eq!(base_name("a///usr/bin/x"), "/usr/bin/x");
        assert_eq!(base_name("a//b//c"), "c");
    }

    #[test]
    fn a_profile_without_a_compiled_attachment_attaches_by_name() {
        let b = Bounds::new(ForcedMode::AsWritten, Some(vec!["/opt/**".into()]));
        assert!(b.judge(&[p("/opt/x", Mode::Enforce)]).is_ok());
        assert!(b.judge(&[p("custom.a", Mode::Enforce)]).is_ok());
        let e = b
            .judge(&[
                p("custom.a", Mode::Enforce),
                p("custom.a///usr/sbin/sshd", Mode::Enforce),
            ])
            .unwrap_err();
        assert!(e.contains("attaches to /usr/sbin/sshd"), "{e}");
    }
}
