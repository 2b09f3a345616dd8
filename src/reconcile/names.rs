//! The rules for profile names: which names armord never loads, whatever
//! the source (empty, over-long, control characters, namespaces, reserved),
//! and which it leaves to their owners (the container runtimes' profiles)
//! or to the configured prefix.

/// Names no source may define.
pub const RESERVED_NAMES: &[&str] = &["unconfined"];

/// Profiles the container runtimes load themselves: a source must not
/// define them (the runtime would replace armord's version, and armord would
/// put its own back) unless `takeover = true`.
pub const RUNTIME_NAMES: &[&str] = &["docker-default", "cri-containerd.apparmor.d", "crio-default"];
/// Podman/CRI-O's versioned default profiles.
pub const RUNTIME_PREFIXES: &[&str] = &["containers-default-"];

/// The longest profile name armord loads, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Why a name cannot be a profile armord loads, whatever the prefix.
pub fn bad_name(name: &str) -> Option<String> {
    let shown = || -> String { name.chars().take(64).flat_map(char::escape_debug).collect() };
    if name.is_empty() {
        return Some("a profile has an empty name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!(
            "profile `{}…` has a name of {} bytes, over the limit of {MAX_NAME_BYTES}",
            shown(),
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Some(format!(
            "profile `{}` has a control character (newline, tab, …) in its name",
            shown()
        ));
    }
    if name.starts_with(':') {
        return Some(format!(
            "profile `{}` names a policy namespace; armord loads into the root namespace only",
            shown()
        ));
    }
    None
}

/// Why a name a valid file defines is not loaded: the rules above, the
/// reserved names, the container runtimes' own profiles (unless `takeover`)
/// and the required prefix.
pub(super) fn refusal(name: &str, prefix: &str, takeover: bool) -> Option<String> {
    if let Some(why) = bad_name(name) {
        return Some(why);
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!("profile `{name}` uses a reserved name"));
    }
    if !takeover && (RUNTIME_NAMES.contains(&name) || RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))) {
        return Some(format!(
            "profile `{name}` belongs to a container runtime, which loads it itself (set takeover = true to manage it)"
        ));
    }
    if !name.starts_with(prefix) {
        return Some(format!(
            "profile `{name}` does not start with the required prefix `{prefix}`"
        ));
    }
    None
}
