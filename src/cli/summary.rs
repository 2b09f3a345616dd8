//! `armorctl denials --summary`: denials grouped as they stream past, in
//! memory bounded whatever the input's size (a fleet's merged journal of
//! millions of entries): at most `MAX_GROUPS` groups holding at most
//! `MAX_KEY_BYTES` of names and paths, and at most `MAX_DISTINCT` distinct
//! hosts, profiles and containers remembered in all for the per-group
//! counts; past a bound the rest is counted, not kept.

use super::denials::{Row, local_time, short_id};
use crate::escape;
use std::collections::{HashMap, HashSet};

/// Groups kept; denials of any further group are counted on stderr.
pub const MAX_GROUPS: usize = 100_000;
/// The names and paths the groups hold, in all (a target may be 4 KiB
/// long; 100,000 of those would be 400 MB).
pub const MAX_KEY_BYTES: usize = 32 << 20;
/// Distinct values remembered, across all groups, for HOSTS, PROFILES and
/// CONTAINERS; past it, a count is a lower bound and shown with `+`.
pub const MAX_DISTINCT: usize = 1_000_000;

/// What `--summary` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum By {
    // Each host, profile, operation, target, denied mask and container.
    #[default]
    Denial,
    // Each host: how many denials, of how many profiles.
    Host,
    // Each profile: how many denials, on how many hosts.
    Profile,
    // Each container, by host: how many denials, of how many profiles.
    Container,
}

impl By {
    /// The columns that name a group.
    fn keys(self) -> &'static [&'static str] {
        match self {
            By::Denial => &["HOST", "PROFILE", "OPERATION", "TARGET", "DENIED", "CONTAINER"],
            By::Host => &["HOST"],
            By::Profile => &["PROFILE"],
            By::Container => &["HOST", "CONTAINER"],
        }
    }

    /// A group's key: its columns' values, each length-prefixed, in one
    /// allocation (a group is kept in as little memory as it can be).
    fn key_of(self, r: &Row) -> Box<[u8]> {
        let mut key = Vec::new();
        for k in self.keys() {
            let v = match *k {
                "HOST" => &r.host,
                "PROFILE" => &r.profile,
                "OPERATION" => &r.operation,
                "TARGET" => &r.target,
                "DENIED" => &r.denied,
                _ => &r.container,
            };
            key.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
            key.extend_from_slice(v.as_bytes());
        }
        key.into_boxed_slice()
    }
}

/// The values of a key made by `By::key_of`.
fn key_values(mut key: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((len, rest)) = key.split_first_chunk::<4>() {
        let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
        out.push(String::from_utf8_lossy(&rest[..n]).into_owned());
        key = &rest[n..];
    }
    out
}

impl By {
    /// The distinct counts shown per group.
    fn counts(self) -> &'static [Distinct] {
        match self {
            By::Denial => &[],
            By::Host => &[Distinct::Profiles, Distinct::Containers],
            By::Profile => &[Distinct::Hosts, Distinct::Containers],
            By::Container => &[Distinct::Profiles],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Distinct {
    Hosts,
    Profiles,
    Containers,
}

impl Distinct {
    fn name(self) -> &'static str {
        match self {
            Distinct::Hosts => "HOSTS",
            Distinct::Profiles => "PROFILES",
            Distinct::Containers => "CONTAINERS",
        }
    }

    fn of(self, r: &Row) -> &str {
        match self {
            Distinct::Hosts => &r.host,
            Distinct::Profiles => &r.profile,
            Distinct::Containers => &r.container,
        }
    }
}

/// One group as it accumulates.
#[derive(Debug, Default)]
struct Acc {
    count: u64,
    first_us: u64,
    last_us: u64,
    machine_id: String,
    pod: String,
    /// Per distinct count: the hashes of the values seen (non-empty values).
    seen: Vec<HashSet<u64>>,
    /// A distinct count stopped at the budget.
    saturated: bool,
}

/// The summary being read.
#[derive(Debug)]
pub struct Summary {
    by: By,
    groups: HashMap<Box<[u8]>, Acc>,
    /// Denials of groups past `MAX_GROUPS`.
    others: u64,
    distinct: usize,
    key_bytes: usize,
    max_groups: usize,
    max_distinct: usize,
    max_key_bytes: usize,
}

/// One finished group, as `--json` writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<usize>,
    /// A distinct count above is a lower bound (the memory bound was met).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_least: bool,
    pub first_us: u64,
    pub last_us: u64,
}

fn hash(s: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(s)
}

impl Summary {
    pub fn new(by: By) -> Summary {
        Summary::bounded(by, MAX_GROUPS, MAX_DISTINCT, MAX_KEY_BYTES)
    }

    pub fn bounded(by: By, max_groups: usize, max_distinct: usize, max_key_bytes: usize) -> Summary {
        Summary {
            by,
            groups: HashMap::new(),
            others: 0,
            distinct: 0,
            key_bytes: 0,
            max_groups,
            max_distinct,
            max_key_bytes,
        }
    }

    pub fn add(&mut self, r: &Row) {
        let key = self.by.key_of(r);
        let n = self.by.counts().len();
        let full = self.groups.len() >= self.max_groups || self.key_bytes + key.len() > self.max_key_bytes;
        let acc = match self.groups.get_mut(&key) {
            Some(a) => a,
            None if full => {
                self.others += 1;
                return;
            }
            None => {
                self.key_bytes += key.len();
                self.groups.entry(key).or_insert_with(|| Acc {
                    first_us: r.when_us,
                    last_us: r.when_us,
                    seen: vec![HashSet::new(); n],
                    ..Acc::default()
                })
            }
        };
        acc.count += 1;
        acc.first_us = acc.first_us.min(r.when_us);
        acc.last_us = acc.last_us.max(r.when_us);
        if acc.machine_id.is_empty() {
            acc.machine_id.clone_from(&r.machine_id);
        }
        if acc.pod.is_empty() {
            acc.pod.clone_from(&r.pod);
        }
        for (i, d) in self.by.counts().iter().enumerate() {
            let v = d.of(r);
            if v.is_empty() {
                continue;
            }
            let h = hash(v);
            if acc.seen[i].contains(&h) {
                continue;
            }
            if self.distinct >= self.max_distinct {
                acc.saturated = true;
                continue;
            }
            acc.seen[i].insert(h);
            self.distinct += 1;
        }
    }

    /// Denials not shown in a group of their own (past `MAX_GROUPS`).
    pub fn others(&self) -> u64 {
        self.others
    }

    /// The groups, most denials first.
    pub fn finish(self) -> Vec<Group> {
        let by = self.by;
        let name = match by {
            By::Denial => "denial",
            By::Host => "host",
            By::Profile => "profile",
            By::Container => "container",
        };
        let mut out: Vec<Group> = self
            .groups
            .into_iter()
            .map(|(key, acc)| {
                let key = key_values(&key);
                let col = |c: &str| by.keys().iter().position(|k| *k == c).map(|i| key[i].clone());
                let dist = |d: Distinct| by.counts().iter().position(|x| *x == d).map(|i| acc.seen[i].len());
                let host = col("HOST");
                Group {
                    by: name,
                    machine_id: host.as_ref().map(|_| acc.machine_id.clone()),
                    host,
                    profile: col("PROFILE"),
                    operation: col("OPERATION"),
                    target: col("TARGET"),
                    denied: col("DENIED"),
                    pod: col("CONTAINER").map(|_| acc.pod.clone()),
                    container: col("CONTAINER"),
                    count: acc.count,
                    hosts: dist(Distinct::Hosts),
                    profiles: dist(Distinct::Profiles),
                    containers: dist(Distinct::Containers),
                    at_least: acc.saturated,
                    first_us: acc.first_us,
                    last_us: acc.last_us,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (&a.host, &a.profile, &a.operation, &a.target, &a.container).cmp(&(
                    &b.host,
                    &b.profile,
                    &b.operation,
                    &b.target,
                    &b.container,
                ))
            })
        });
        out
    }
}

/// The summary as an aligned table: COUNT, the group's columns, its
/// distinct counts, FIRST and LAST.
#[cfg(test)]
pub fn table(by: By, groups: &[Group]) -> String {
    let mut out = Vec::new();
    let _ = write_table(by, groups, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// One group's cells, as the table shows them.
fn cells(by: By, g: &Group) -> Vec<String> {
    let plus = |n: Option<usize>| n.map(|n| format!("{n}{}", if g.at_least { "+" } else { "" }));
    let mut r = vec![g.count.to_string()];
    for k in by.keys() {
        let v = match *k {
            "HOST" => g.host.as_deref(),
            "PROFILE" => g.profile.as_deref(),
            "OPERATION" => g.operation.as_deref(),
            "TARGET" => g.target.as_deref(),
            "DENIED" => g.denied.as_deref(),
            _ => None,
        };
        r.push(match (*k, v) {
            ("CONTAINER", _) => {
                let c = g.container.as_deref().unwrap_or_default();
                match g.pod.as_deref() {
                    Some(p) if !p.is_empty() => format!("{} (pod {})", short_id(c), escape::text(p)),
                    _ => escape::text(short_id(c)).into_owned(),
                }
            }
            (_, v) => escape::text(v.unwrap_or_default()).into_owned(),
        });
    }
    for d in by.counts() {
        let n = match d {
            Distinct::Hosts => g.hosts,
            Distinct::Profiles => g.profiles,
            Distinct::Containers => g.containers,
        };
        r.push(plus(n).unwrap_or_default());
    }
    r.push(local_time(g.first_us / 1_000_000));
    r.push(local_time(g.last_us / 1_000_000));
    r
}

/// Write the table a line at a time: the widths first, from each row's
/// cells, then the rows (a table of 100,000 groups is never held whole).
pub fn write_table(by: By, groups: &[Group], out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut header: Vec<String> = vec!["COUNT".into()];
    header.extend(by.keys().iter().map(|k| (*k).to_owned()));
    header.extend(by.counts().iter().map(|d| d.name().to_owned()));
    header.extend(["FIRST".into(), "LAST".into()]);
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for g in groups {
        for (w, c) in width.iter_mut().zip(cells(by, g)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String]| {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(&width).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = *w;
            if i == 0 {
                line.push_str(&format!("{c:>w$}"));
            } else {
                line.push_str(&format!("{c:<w$}"));
            }
        }
        line.truncate(line.trim_end().len());
        line.push('\n');
        line
    };
    out.write_all(line(&header).as_bytes())?;
    for g in groups {
        out.write_all(line(&cells(by, g)).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, profile: &str, target: &str, container: &str, when_us: u64) -> Row {
        Row {
            when_us,
            kind: "DENIED".into(),
            host: host.into(),
            machine_id: format!("id-{host}"),
            profile: profile.into(),
            operation: "open".into(),
            target: target.into(),
            denied: "r".into(),
            container: container.into(),
            ..Row::default()
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            row("n1", "p", "/a", "c1", 1),
            row("n1", "p", "/a", "c1", 5),
            row("n1", "q", "/b", "c2", 2),
            row("n2", "p", "/a", "c3", 3),
            row("n2", "p", "/c", "c3", 4),
            row("n3", "p", "/a", "", 6),
        ]
    }

    fn summarize(by: By) -> Vec<Group> {
        let mut s = Summary::new(by);
        for r in rows() {
            s.add(&r);
        }
        s.finish()
    }

    #[test]
    fn by_host_counts_each_hosts_denials_and_profiles() {
        let g = summarize(By::Host);
        let got: Vec<(&str, u64, Option<usize>, Option<usize>)> = g
            .iter()
            .map(|g| (g.host.as_deref().unwrap(), g.count, g.profiles, g.containers))
            .collect();
        assert_eq!(
            got,
            [
                ("n1", 3, Some(2), Some(2)),
                ("n2", 2, Some(1), Some(1)),
                ("n3", 1, Some(1), Some(0))
            ]
        );
        assert_eq!(g[0].machine_id.as_deref(), Some("id-n1"));
        assert_eq!((g[0].first_us, g[0].last_us), (1, 5));
        let t = table(By::Host, &g);
        assert!(t.starts_with("COUNT  HOST  PROFILES  CONTAINERS  FIRST"), "{t}");
    }

    #[test]
    fn by_profile_counts_hosts_and_by_container_keeps_hosts_apart() {
        let g = summarize(By::Profile);
        let got: Vec<(&str, u64, Option<usize>)> = g
            .iter()
            .map(|g| (g.profile.as_deref().unwrap(), g.count, g.hosts))
            .collect();
        assert_eq!(got, [("p", 5, Some(3)), ("q", 1, Some(1))]);
        assert!(g.iter().all(|g| g.host.is_none() && g.machine_id.is_none()));
        let g = summarize(By::Container);
        let got: Vec<(&str, &str, u64)> = g
            .iter()
            .map(|g| (g.host.as_deref().unwrap(), g.container.as_deref().unwrap(), g.count))
            .collect();
        assert_eq!(got, [("n1", "c1", 2), ("n2", "c3", 2), ("n1", "c2", 1), ("n3", "", 1)]);
    }

    #[test]
    fn by_denial_keeps_each_host_apart_and_names_it() {
        let g = summarize(By::Denial);
        assert_eq!(g.len(), 5);
        assert_eq!(
            (g[0].host.as_deref(), g[0].target.as_deref(), g[0].count),
            (Some("n1"), Some("/a"), 2)
        );
        let json = serde_json::to_value(&g[0]).unwrap();
        assert_eq!(json["host"], "n1");
        assert_eq!(json["machine_id"], "id-n1");
        assert!(json.get("hosts").is_none());
        let t = table(By::Denial, &g);
        assert!(
            t.starts_with("COUNT  HOST  PROFILE  OPERATION  TARGET  DENIED  CONTAINER  FIRST"),
            "{t}"
        );
    }

    #[test]
    fn memory_is_bounded_and_what_is_not_kept_is_counted() {
        let mut s = Summary::bounded(By::Denial, 3, 10, MAX_KEY_BYTES);
        for i in 0..100u64 {
            s.add(&row("n", "p", &format!("/f{i}"), "", i));
        }
        assert_eq!(s.groups.len(), 3);
        assert_eq!(s.others(), 97);
        // Long targets: the names held, not the group count, is the bound.
        let mut s = Summary::bounded(By::Denial, 100, 10, 10_000);
        for i in 0..100u64 {
            s.add(&row("n", "p", &format!("/{i}/{}", "x".repeat(4000)), "", i));
        }
        assert_eq!((s.groups.len(), s.others()), (2, 98));
        let mut s = Summary::bounded(By::Profile, 10, 4, MAX_KEY_BYTES);
        for i in 0..10u64 {
            s.add(&row(&format!("n{i}"), "p", "/a", "", i));
        }
        let g = s.finish();
        assert_eq!(g[0].count, 10);
        assert_eq!(g[0].hosts, Some(4));
        assert!(g[0].at_least);
        assert!(table(By::Profile, &g).contains("  4+  "));
    }
}
