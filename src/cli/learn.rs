//! `armorctl learn`: the rules a profile's loaded version learned, written
//! into its file (or, for an allow-list spec, as spec additions), or as a
//! diff against the file in the sync directory. Reads the state directory
//! only, so it works while armord is down.

use super::diff::unified;
use super::suggest_cmd::compiles;
use super::*;
use crate::state::Owned;
use crate::trial::learned::Version;
use crate::trial::store::Store;
use std::collections::BTreeMap;

/// The comment that opens the learned block in a profile.
pub const LEARNED_HEADER: &str = "learned by armord (armorctl learn); review before committing";

#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The profile.
    pub profile: String,
    /// Only rules seen within this long: `90`, `30s`, `5m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// The learned rules as JSON, with first and last seen and counts.
    #[arg(long, conflicts_with = "diff")]
    pub json: bool,
    /// A unified diff against the file in the sync directory, for `git apply`.
    #[arg(long)]
    pub diff: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The rules of `v` seen since `since_us`, as they go into a profile.
fn rules_since(v: &Version, since_us: u64) -> Vec<String> {
    let mut out: Vec<String> = v
        .files
        .iter()
        .filter(|(_, f)| f.seen.last_us >= since_us)
        .map(|(p, f)| format!("{p} {},", crate::audit::suggest::perm_string(&f.perms)))
        .chain(
            v.rules
                .iter()
                .filter(|(_, s)| s.last_us >= since_us)
                .map(|(r, _)| r.clone()),
        )
        .collect();
    out.sort();
    out
}

pub(super) fn learn(cfg: &config::Config, a: &LearnArgs) -> Result<i32, CliError> {
    let state = StateDir::new(cfg.state_dir.clone());
    let manifest = match state.load_manifest() {
        Loaded::Found(m) => m,
        Loaded::Missing => {
            return Err(CliError::Other(format!(
                "armord owns no profile yet ({} has no manifest)",
                escape::path(&cfg.state_dir)
            )));
        }
        Loaded::Corrupt(e) => return Err(CliError::Other(e.to_string())),
    };
    let Some(owned) = manifest.profiles.get(&a.profile) else {
        return Err(CliError::Other(format!(
            "armord does not own a profile named {}",
            escape::text(&a.profile)
        )));
    };
    let learned = Store::peek(&state);
    let since_us = a.since.map_or(0, |d| {
        crate::trial::now_us().saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    });
    let version = learned.version(&a.profile, &owned.sha256);
    let rules = version.map(|v| rules_since(v, since_us)).unwrap_or_default();
    if a.json {
        print_json(&a.profile, owned, version, since_us);
        return Ok(if rules.is_empty() { 1 } else { 0 });
    }
    if rules.is_empty() {
        eprintln!(
            "armorctl: nothing learned for {} (version {})",
            escape::text(&a.profile),
            owned.sha256.get(..12).unwrap_or(&owned.sha256)
        );
        return Ok(1);
    }
    let text = std::fs::read_to_string(&owned.file).map_err(|e| CliError::Io(owned.file.to_path_buf(), e))?;
    let is_spec = owned.file.to_string_lossy().ends_with(crate::spec::SPEC_SUFFIX);
    let new = if is_spec {
        let (additions, left) = spec_additions(&rules);
        for r in &left {
            eprintln!(
                "armorctl: a spec cannot say `{}`; add it to a profile instead",
                escape::text(r)
            );
        }
        if !a.diff {
            outln!("# add to {}:", escape::path(&owned.file));
            for (k, v) in &additions {
                let v: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
                outln!("{k} = [{}]", v.join(", "));
            }
            return Ok(0);
        }
        crate::spec::edit::add(&text, &additions).map_err(CliError::Other)?
    } else {
        profile_with_rules(cfg, &text, &a.profile, &rules)?
    };
    if a.diff {
        let name = owned.file.strip_prefix(&owned.source).unwrap_or(&owned.file);
        let name = name.to_string_lossy();
        let d = unified(name.trim_start_matches('/'), &text, &new)
            .ok_or_else(|| CliError::Other(format!("{} is too long to diff", escape::path(&owned.file))))?;
        out!("{d}");
    } else {
        out!("{new}");
    }
    Ok(0)
}

/// The profile text with the learned block; a rule the parser rejects in
/// it is left in as a comment that says so.
fn profile_with_rules(cfg: &config::Config, text: &str, name: &str, rules: &[String]) -> Result<String, CliError> {
    let with = |rules: &[String]| {
        crate::audit::suggest::insert_block(text, name, LEARNED_HEADER, rules).ok_or_else(|| {
            CliError::Other(format!(
                "the block of profile {} is not found in its file",
                escape::text(name)
            ))
        })
    };
    let all = with(rules)?;
    if compiles(cfg, &all).is_ok() {
        return Ok(all);
    }
    let checked: Vec<String> = rules
        .iter()
        .map(|r| match with(std::slice::from_ref(r)).map(|t| compiles(cfg, &t)) {
            Ok(Ok(())) => r.clone(),
            Ok(Err(e)) => format!("# {r}  (does not compile: {e})"),
            Err(_) => format!("# {r}"),
        })
        .collect();
    with(&checked)
}

/// Learned rules as spec additions, and the rules a spec cannot say.
fn spec_additions(rules: &[String]) -> (Vec<(&'static str, Vec<String>)>, Vec<String>) {
    let mut lists: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut left = Vec::new();
    for r in rules {
        let body = r.trim_end_matches(',');
        if let Some(cap) = body.strip_prefix("capability ") {
            lists.entry("capabilities").or_default().push(cap.to_owned());
        } else if let Some(net) = body.strip_prefix("network ") {
            let family = net.split_whitespace().next().unwrap_or_default();
            lists.entry("network").or_default().push(family.to_owned());
        } else if body.starts_with("unix ") {
            lists.entry("network").or_default().push("unix".to_owned());
        } else if let Some((path, perms)) = body.rsplit_once(' ')
            && path.starts_with('/')
            && !path.contains(['\\', '"'])
            // A spec grants r, rw or ix: lock, link and mmap-exec are not
            // its to say, and a trial that needs them would learn them again.
            && !perms.contains(['k', 'l', 'm'])
        {
            // A spec path globs with `*` only: a process id matches `*`.
            let path = path.replace(crate::trial::generalise::ID, "*");
            let key = if perms.contains('x') {
                "exec"
            } else if perms.contains(['w', 'a']) {
                "write"
            } else {
                "read"
            };
            lists.entry(key).or_default().push(path);
        } else {
            left.push(r.clone());
        }
    }
    let additions = crate::spec::edit::LIST_KEYS
        .iter()
        .filter_map(|k| lists.remove(k).map(|v| (*k, v)))
        .collect();
    (additions, left)
}

fn print_json(profile: &str, owned: &Owned, version: Option<&Version>, since_us: u64) {
    let rules: Vec<serde_json::Value> = version
        .map(|v| {
            let files = v
                .files
                .iter()
                .filter(|(_, f)| f.seen.last_us >= since_us)
                .map(|(p, f)| (format!("{p} {},", crate::audit::suggest::perm_string(&f.perms)), f.seen));
            let others = v
                .rules
                .iter()
                .filter(|(_, s)| s.last_us >= since_us)
                .map(|(r, s)| (r.clone(), *s));
            files
                .chain(others)
                .map(|(rule, s)| {
                    serde_json::json!({
                        "rule": rule,
                        "first_seen_us": s.first_us,
                        "last_seen_us": s.last_us,
                        "count": s.count,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let j = serde_json::json!({
        "profile": profile,
        "sha256": owned.sha256,
        "file": owned.file,
        "rules": rules,
        "dropped": version.map_or(0, |v| v.dropped),
    });
    outln!("{j}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_rules_become_spec_lists() {
        let rules: Vec<String> = [
            "/proc/[0-9]*/status r,",
            "/usr/bin/curl ix,",
            "/var/log/app w,",
            "capability net_raw,",
            "network inet stream,",
            "signal (send) peer=x,",
            "/run/app.lock rwk,",
        ]
        .map(String::from)
        .into();
        let (add, left) = spec_additions(&rules);
        assert_eq!(
            add,
            [
                ("exec", vec!["/usr/bin/curl".to_owned()]),
                ("read", vec!["/proc/*/status".to_owned()]),
                ("write", vec!["/var/log/app".to_owned()]),
                ("capabilities", vec!["net_raw".to_owned()]),
                ("network", vec!["inet".to_owned()]),
            ]
        );
        assert_eq!(left, ["signal (send) peer=x,", "/run/app.lock rwk,"]);
    }
}
