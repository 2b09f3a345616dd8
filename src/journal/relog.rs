//! Re-logging each denial as one structured journal entry, rate-limited per
//! (profile, operation, name), and counting denials per profile and kind.

use super::Event;
use crate::container::Origin;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The `MESSAGE_ID` of armord's denial entries (see the shipped catalog).
pub const MESSAGE_ID: &str = "3c1f6a0e8b2d4c57a9e4d21b7f5c8e90";
/// The `MESSAGE_ID` of the entry that says how many were suppressed.
pub const SUPPRESSED_MESSAGE_ID: &str = "8d0b5e7a1c3f4e2b9a6d0c4f7e1b3a52";

/// The journal fields of one event; `origin` is the container and pod of
/// its process, where known.
pub fn relog_fields(ev: &Event, origin: &Origin) -> Vec<(&'static str, String)> {
    let r = &ev.record;
    let s = |k: &str| r.str(k).map(|v| v.into_owned()).unwrap_or_default();
    let mut f = vec![
        ("MESSAGE_ID", MESSAGE_ID.to_owned()),
        ("ARMORD_KIND", r.kind.to_string()),
        (
            "ARMORD_PROFILE",
            r.profile().map(|p| p.into_owned()).unwrap_or_default(),
        ),
        ("ARMORD_OPERATION", s("operation")),
        (
            "ARMORD_NAME",
            r.str("name")
                .or_else(|| r.str("capname"))
                .map(|v| v.into_owned())
                .unwrap_or_default(),
        ),
        (
            "ARMORD_REQUESTED",
            r.str("requested")
                .or_else(|| r.str("mask"))
                .map(|v| v.into_owned())
                .unwrap_or_default(),
        ),
        (
            "ARMORD_DENIED",
            r.str("denied")
                .or_else(|| r.str("mask"))
                .map(|v| v.into_owned())
                .unwrap_or_default(),
        ),
        ("ARMORD_PID", s("pid")),
        (
            "ARMORD_COMM",
            r.str("comm")
                .or_else(|| r.str("exe"))
                .map(|v| v.into_owned())
                .unwrap_or_default(),
        ),
        ("ARMORD_AUDIT_ID", r.audit_id.map(|a| a.to_string()).unwrap_or_default()),
        // The follower's de-duplication key: after a crash, the entries
        // armord re-logged past its saved cursor are read back by it, so a
        // record is never re-logged twice.
        (
            super::AUDIT_KEY_FIELD,
            ev.key().map(|(b, id)| format!("{b} {id}")).unwrap_or_default(),
        ),
    ];
    for (k, v) in [
        ("ARMORD_CONTAINER_ID", &origin.container_id),
        ("ARMORD_POD_UID", &origin.pod_uid),
    ] {
        if let Some(v) = v {
            f.push((k, v.clone()));
        }
    }
    if let Some(rt) = origin.runtime {
        f.push(("ARMORD_CONTAINER_RUNTIME", rt.to_owned()));
    }
    // The whole record, so `armorctl suggest` can rebuild it from the journal.
    if let Ok(json) = serde_json::to_string(r) {
        f.push(("ARMORD_RECORD", json));
    }
    f.retain(|(_, v)| !v.is_empty());
    f
}

fn message(ev: &Event) -> String {
    use std::fmt::Write as _;
    let r = &ev.record;
    let mut m = String::with_capacity(160);
    let _ = write!(
        m,
        "apparmor {} {} {}",
        r.kind,
        r.profile().as_deref().unwrap_or("?"),
        r.str("operation").as_deref().unwrap_or_default()
    );
    if let Some(n) = r.str("name").or_else(|| r.str("capname")) {
        let _ = write!(m, " {n}");
    }
    if let Some(d) = r.str("denied").or_else(|| r.str("mask")) {
        let _ = write!(m, " ({d})");
    }
    if let Some(c) = r.str("comm").or_else(|| r.str("exe")) {
        let _ = write!(m, " comm={c}");
    }
    if let Some(p) = r.str("pid") {
        let _ = write!(m, " pid={p}");
    }
    m
}

static COPY_PATH: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// The file tests name in `ARMORD_RELOG_COPY`, if any.
fn copy_path() -> Option<&'static std::path::PathBuf> {
    COPY_PATH
        .get_or_init(|| std::env::var_os("ARMORD_RELOG_COPY").map(Into::into))
        .as_ref()
}

/// Tests set `ARMORD_RELOG_COPY` to a file: each re-logged entry is also
/// appended there as a `journalctl --output=json` line, so that a fake
/// journalctl can give it back as the journal would.
fn copy_for_tests(fields: &[(&str, String)], msg: &str) {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let Some(path) = copy_path() else {
        return;
    };
    let mut entry: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
        .collect();
    let cursor = format!("relog-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
    entry.insert("__CURSOR".into(), cursor.into());
    entry.insert("_TRANSPORT".into(), "journal".into());
    // What journald adds of its own for armord in its unit.
    entry.insert("_UID".into(), nix::unistd::geteuid().as_raw().to_string().into());
    entry.insert("_COMM".into(), "armord".into());
    entry.insert("_SYSTEMD_UNIT".into(), super::UNIT.into());
    entry.insert("MESSAGE".into(), msg.into());
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{}", serde_json::Value::Object(entry));
    }
}

fn emit(level: log::Level, fields: &[(&str, String)], msg: &str) {
    copy_for_tests(fields, msg);
    let kv: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    log::logger().log(
        &log::Record::builder()
            .level(level)
            .target("armord::denial")
            .args(format_args!("{msg}"))
            .key_values(&kv)
            .build(),
    );
}

/// A token bucket per key: `burst` entries per `interval`; the rest are
/// counted and reported when the key's next interval starts.
/// How many (profile, operation, name) keys the rate limit tracks at most:
/// memory stays flat however many distinct denials arrive.
pub const RATE_LIMIT_KEYS: usize = 4096;

#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    interval: Duration,
    /// By `profile NUL operation NUL name`: a key already tracked is found
    /// without an allocation.
    keys: HashMap<String, (Instant, u32, u64)>,
    scratch: String,
}

impl RateLimit {
    pub fn new(burst: u32, interval: Duration) -> Self {
        RateLimit {
            burst,
            interval,
            keys: HashMap::new(),
            scratch: String::new(),
        }
    }

    /// How many keys are tracked now.
    pub fn tracked(&self) -> usize {
        self.keys.len()
    }

    /// Should this event be logged? The second value is how many of the same
    /// key were suppressed in the interval that just ended.
    pub fn check(&mut self, key: (&str, &str, &str), now: Instant) -> (bool, u64) {
        self.scratch.clear();
        for (i, part) in [key.0, key.1, key.2].into_iter().enumerate() {
            if i > 0 {
                self.scratch.push('\0');
            }
            self.scratch.push_str(part);
        }
        if self.keys.len() >= RATE_LIMIT_KEYS && !self.keys.contains_key(&self.scratch) {
            // Keep only the keys that suppress now or have suppressed
            // records still to report; a flood of distinct keys beyond that
            // starts over (the counters still count every record).
            let (burst, interval) = (self.burst, self.interval);
            self.keys
                .retain(|_, e| e.2 > 0 || (e.1 >= burst && now.duration_since(e.0) < interval));
            if self.keys.len() >= RATE_LIMIT_KEYS * 3 / 4 {
                self.keys.clear();
            }
        }
        let Some(e) = self.keys.get_mut(&self.scratch) else {
            // A key's first record: the key's interval starts now.
            let logged = self.burst > 0;
            self.keys
                .insert(self.scratch.clone(), (now, u32::from(logged), u64::from(!logged)));
            return (logged, 0);
        };
        let mut reported = 0;
        if now.duration_since(e.0) >= self.interval {
            reported = e.2;
            *e = (now, 0, 0);
        }
        if e.1 < self.burst {
            e.1 += 1;
            (true, reported)
        } else {
            e.2 += 1;
            (false, reported)
        }
    }
}

/// Denial counters: per profile and kind, and lost records.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub by_profile: BTreeMap<String, BTreeMap<String, u64>>,
    pub suppressed: u64,
    pub lost: u64,
    /// When the first lost record was reported (µs since the epoch).
    pub lost_since_us: Option<u64>,
}

impl Counters {
    pub fn count(&mut self, ev: &Event) {
        let profile = ev.record.profile();
        let profile = profile.as_deref().unwrap_or_default();
        let kind = ev.record.kind.as_ref();
        if let Some(n) = self.by_profile.get_mut(profile).and_then(|k| k.get_mut(kind)) {
            *n += 1;
            return;
        }
        *self
            .by_profile
            .entry(profile.to_owned())
            .or_default()
            .entry(kind.to_owned())
            .or_default() += 1;
    }
    pub fn total(&self) -> u64 {
        self.by_profile.values().flat_map(|m| m.values()).sum()
    }
}

/// Re-log one event (if the rate limit allows) and count it.
pub fn relog(ev: &Event, origin: &Origin, rl: &mut RateLimit, counters: &mut Counters) {
    counters.count(ev);
    let r = &ev.record;
    let (profile, operation, name) = (r.profile(), r.str("operation"), r.str("name"));
    let key = (
        profile.as_deref().unwrap_or_default(),
        operation.as_deref().unwrap_or_default(),
        name.as_deref().unwrap_or_default(),
    );
    let (log_it, suppressed) = rl.check(key, Instant::now());
    if suppressed > 0 {
        let fields = vec![
            ("MESSAGE_ID", SUPPRESSED_MESSAGE_ID.to_owned()),
            ("ARMORD_PROFILE", key.0.to_owned()),
            ("ARMORD_OPERATION", key.1.to_owned()),
            ("ARMORD_NAME", key.2.to_owned()),
            ("ARMORD_SUPPRESSED", suppressed.to_string()),
        ];
        emit(
            log::Level::Warn,
            &fields,
            &format!(
                "suppressed {suppressed} more apparmor records for {} {} {}",
                key.0, key.1, key.2
            ),
        );
    }
    if !log_it {
        counters.suppressed += 1;
        return;
    }
    let level = match r.kind.as_ref() {
        "DENIED" | "KILLED" | "ERROR" => log::Level::Warn,
        _ => log::Level::Info,
    };
    // The fields are for the journal (and the test copy, and --verbose's
    // stderr lines); a plain stderr line is the message alone.
    let fields = if crate::logging::structured() || copy_path().is_some() || log::log_enabled!(log::Level::Debug) {
        relog_fields(ev, origin)
    } else {
        Vec::new()
    };
    emit(level, &fields, &message(ev));
}
