//! The AppArmor audit record parser: a pure function from one log line to a
//! record. It accepts journald's MESSAGE of both transports, audit.log lines
//! (`type=AVC msg=audit(…): …`, `USER_AVC … msg='…'`, `type=APPARMOR_*`),
//! and syslog, dmesg and kern.log prefixes. It never panics.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::borrow::Cow;

/// `audit(EPOCH.MS:SERIAL)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditId {
    pub epoch: u64,
    pub millis: u32,
    pub serial: u64,
}

impl std::fmt::Display for AuditId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}:{}", self.epoch, self.millis, self.serial)
    }
}

impl AuditId {
    /// Parse `EPOCH.MS:SERIAL`.
    pub fn parse(s: &str) -> Option<AuditId> {
        let (time, serial) = s.split_once(':')?;
        let (epoch, millis) = time.split_once('.')?;
        if epoch.is_empty() || millis.is_empty() || serial.is_empty() || millis.len() > 9 {
            return None;
        }
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(epoch) || !all_digits(millis) || !all_digits(serial) {
            return None;
        }
        Some(AuditId {
            epoch: epoch.parse().ok()?,
            millis: millis.parse().ok()?,
            serial: serial.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Num(i64),
}

impl Value<'_> {
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            Value::Num(n) => Cow::Owned(n.to_string()),
        }
    }
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Num(n) => Value::Num(n),
        }
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(v) => s.serialize_str(v),
            Value::Num(n) => s.serialize_i64(*n),
        }
    }
}

/// One parsed record: its kind (`apparmor=`), audit id, and every field in
/// the order it came, with aliases normalized (`requested_mask` →
/// `requested`, `denied_mask` → `denied`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Cow<'a, str>,
    pub audit_id: Option<AuditId>,
    pub fields: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Record<'a> {
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn str(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).map(Value::as_str)
    }
    pub fn num(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Num(n) => Some(*n),
            Value::Str(s) => s.parse().ok(),
        }
    }
    /// The profile: `profile=`, or `label=` (D-Bus records).
    pub fn profile(&self) -> Option<Cow<'_, str>> {
        self.str("profile").or_else(|| self.str("label"))
    }
    pub fn into_owned(self) -> Record<'static> {
        Record {
            kind: Cow::Owned(self.kind.into_owned()),
            audit_id: self.audit_id,
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
        }
    }
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len() + 2))?;
        m.serialize_entry("kind", &self.kind)?;
        if let Some(id) = &self.audit_id {
            m.serialize_entry("audit_id", &id.to_string())?;
        }
        for (k, v) in &self.fields {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an AppArmor record")]
    NotAppArmor,
    #[error("malformed audit id: {0}")]
    BadAuditId(String),
}

/// Keys whose values the kernel writes as untrusted strings: either quoted,
/// or unquoted uppercase hex when they hold spaces, quotes or control bytes.
const HEX_KEYS: &[&str] = &[
    "name",
    "name2",
    "comm",
    "exe",
    "profile",
    "label",
    "peer",
    "peer_profile",
    "peer_label",
    "target",
    "namespace",
    "srcname",
    "fstype",
    "path",
    "interface",
    "member",
    "info",
    "addr",
    "peer_addr",
    "execpath",
];

/// Keys whose values are numbers.
const NUM_KEYS: &[&str] = &[
    "pid",
    "parent",
    "peer_pid",
    "task",
    "fsuid",
    "ouid",
    "error",
    "sauid",
    "uid",
    "auid",
    "ses",
    "lport",
    "fport",
    "src",
    "dest",
    "protocol",
    "offset",
    "capability",
    "magic_token",
    "gid",
    "euid",
    "suid",
    "egid",
    "sgid",
    "type",
];

fn alias(key: &str) -> &str {
    match key {
        "requested_mask" => "requested",
        "denied_mask" => "denied",
        "apparmor" => "kind",
        // The record's own keys: a field of that name is kept apart.
        "kind" => "field_kind",
        "audit_id" => "field_audit_id",
        k => k,
    }
}

fn decode_hex(s: &str) -> Option<String> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let b = s.as_bytes();
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        out.push(nib(pair[0])? << 4 | nib(pair[1])?);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\n' || b == b'\r' || b == 0x1d
}

/// Split `text` into (key, raw value, quote, after-0x1d) tokens; bare words
/// are skipped.
struct Tokens<'a> {
    s: &'a str,
    pos: usize,
    enriched: bool,
}

struct Token<'a> {
    key: &'a str,
    value: &'a str,
    quote: Option<u8>,
    enriched: bool,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;
    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.s.as_bytes();
        loop {
            while self.pos < b.len() && is_sep(b[self.pos]) {
                if b[self.pos] == 0x1d {
                    self.enriched = true;
                }
                self.pos += 1;
            }
            if self.pos >= b.len() {
                return None;
            }
            let start = self.pos;
            // A key: up to `=`, or a bare word up to a separator.
            while self.pos < b.len() && b[self.pos] != b'=' && !is_sep(b[self.pos]) {
                self.pos += 1;
            }
            if self.pos >= b.len() || b[self.pos] != b'=' || self.pos == start {
                // A bare word (or a stray `=`): skip it.
                if self.pos < b.len() && b[self.pos] == b'=' {
                    self.pos += 1;
                }
                continue;
            }
            let key = &self.s[start..self.pos];
            self.pos += 1;
            let (value, quote) = match b.get(self.pos) {
                Some(&q @ (b'"' | b'\'')) => {
                    let vstart = self.pos + 1;
                    match b[vstart..].iter().position(|&c| c == q) {
                        Some(len) => {
                            self.pos = vstart + len + 1;
                            (&self.s[vstart..vstart + len], Some(q))
                        }
                        None => {
                            // Unterminated: take the rest.
                            self.pos = b.len();
                            (&self.s[vstart..], Some(q))
                        }
                    }
                }
                _ => {
                    let vstart = self.pos;
                    while self.pos < b.len() && !is_sep(b[self.pos]) {
                        self.pos += 1;
                    }
                    (&self.s[vstart..self.pos], None)
                }
            };
            return Some(Token {
                key,
                value,
                quote,
                enriched: self.enriched,
            });
        }
    }
}

fn value<'a>(key: &str, raw: &'a str, quote: Option<u8>) -> Value<'a> {
    if quote.is_none() {
        if HEX_KEYS.contains(&key)
            && let Some(s) = decode_hex(raw)
        {
            return Value::Str(Cow::Owned(s));
        }
        if NUM_KEYS.contains(&key)
            && let Ok(n) = raw.parse::<i64>()
        {
            return Value::Num(n);
        }
    }
    Value::Str(Cow::Borrowed(raw))
}

/// The audit record types AppArmor writes (`linux/audit.h`), by number.
pub mod record_type {
    /// A D-Bus mediation record, written by dbus-daemon or dbus-broker.
    pub const USER_AVC: u32 = 1107;
    /// The kernel's AppArmor records as the audit subsystem numbers them.
    pub const AVC: u32 = 1400;
    pub const APPARMOR: u32 = 1500;
    pub const APPARMOR_AUDIT: u32 = 1501;
    pub const APPARMOR_ALLOWED: u32 = 1502;
    pub const APPARMOR_DENIED: u32 = 1503;
    pub const APPARMOR_HINT: u32 = 1504;
    pub const APPARMOR_STATUS: u32 = 1505;
    pub const APPARMOR_ERROR: u32 = 1506;
    pub const APPARMOR_KILL: u32 = 1507;
}

use record_type::*;

/// Each record type: its number, auditd's name for it, and for the
/// `APPARMOR_*` types the record kind (`apparmor=` value) it implies.
const TYPES: &[(u32, &str, Option<&str>)] = &[
    (USER_AVC, "USER_AVC", None),
    (AVC, "AVC", None),
    (APPARMOR, "APPARMOR", None),
    (APPARMOR_AUDIT, "APPARMOR_AUDIT", Some("AUDIT")),
    (APPARMOR_ALLOWED, "APPARMOR_ALLOWED", Some("ALLOWED")),
    (APPARMOR_DENIED, "APPARMOR_DENIED", Some("DENIED")),
    (APPARMOR_HINT, "APPARMOR_HINT", Some("HINT")),
    (APPARMOR_STATUS, "APPARMOR_STATUS", Some("STATUS")),
    (APPARMOR_ERROR, "APPARMOR_ERROR", Some("ERROR")),
    (APPARMOR_KILL, "APPARMOR_KILL", Some("KILLED")),
];

/// A record type as written (`AVC`, `1400`, `UNKNOWN[1503]`, how auditd
/// and ausearch print a type they have no name for) → its entry in `TYPES`.
fn known_type(t: &str) -> Option<&'static (u32, &'static str, Option<&'static str>)> {
    let bare = t
        .strip_prefix("UNKNOWN[")
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(t);
    match bare.parse::<u32>() {
        Ok(n) => TYPES.iter().find(|(num, _, _)| *num == n),
        Err(_) => TYPES.iter().find(|(_, name, _)| *name == bare),
    }
}

/// The kind from an `APPARMOR_*` record type: its name or its number.
fn kind_of_type(t: &str) -> Option<&'static str> {
    known_type(t).and_then(|(_, _, kind)| *kind)
}

/// A record type as written (`AVC`, `1400`, `UNKNOWN[1503]`) → auditd's
/// name for it and its number, where known.
fn type_name_number(t: &str) -> (Cow<'_, str>, Option<i64>) {
    if let Some((n, name, _)) = known_type(t) {
        return (Cow::Borrowed(*name), Some(i64::from(*n)));
    }
    let bare = t
        .strip_prefix("UNKNOWN[")
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(t);
    (Cow::Borrowed(t), bare.parse::<i64>().ok())
}

fn find(hay: &str, needle: &str) -> Option<usize> {
    hay.find(needle)
}

/// Parse one line.
pub fn parse(line: &str) -> Result<Record<'_>, ParseError> {
    // The audit id, when the line has one.
    let mut audit_id = None;
    let mut body_start = 0;
    if let Some(p) = find(line, "audit(") {
        let rest = &line[p + 6..];
        let close = rest
            .find(')')
            .ok_or_else(|| ParseError::BadAuditId(rest.chars().take(40).collect()))?;
        let id = &rest[..close];
        audit_id = Some(AuditId::parse(id).ok_or_else(|| ParseError::BadAuditId(id.to_owned()))?);
        body_start = p + 6 + close + 1;
    }
    // Fields before `audit(` (`type=1400`, `type=AVC`) count too, but not a
    // syslog prefix: start at the first `type=` when it comes first.
    let head_start = match find(line, "type=") {
        Some(t) if t < body_start => t,
        _ => body_start,
    };
    let head = if head_start < body_start {
        &line[head_start..body_start]
    } else {
        ""
    };
    let body = &line[body_start..];

    let mut rec = Record {
        kind: Cow::Borrowed(""),
        audit_id,
        fields: Vec::with_capacity(16),
    };
    let mut record_type: Option<&str> = None;
    fn add<'a>(rec: &mut Record<'a>, key: Cow<'a, str>, v: Value<'a>, overwrite: bool) {
        if let Some(slot) = rec.fields.iter_mut().find(|(k, _)| *k == key) {
            if overwrite {
                slot.1 = v;
            }
            return;
        }
        rec.fields.push((key, v));
    }

    let mut inner: Option<&str> = None;
    for t in (Tokens {
        s: head,
        pos: 0,
        enriched: false,
    })
    .chain(Tokens {
        s: body,
        pos: 0,
        enriched: false,
    }) {
        if t.key == "msg" {
            // audit.log's `msg=audit(…):` is the id, handled above; USER_AVC
            // carries the AppArmor fields inside `msg='…'`.
            if t.quote == Some(b'\'') {
                inner = Some(t.value);
            }
            continue;
        }
        if t.key == "type" {
            record_type.get_or_insert(t.value);
            continue;
        }
        if t.key == "apparmor" {
            if rec.kind.is_empty() {
                rec.kind = Cow::Borrowed(t.value);
            }
            continue;
        }
        let key: Cow<'_, str> = if t.enriched {
            Cow::Borrowed(match t.key {
                "kind" | "audit_id" => alias(t.key),
                k => k,
            })
        } else {
            Cow::Borrowed(alias(t.key))
        };
        let v = value(&key, t.value, t.quote);
        add(&mut rec, key, v, false);
    }
    if let Some(inner) = inner
        && inner.contains("apparmor=")
    {
        // The inner message is the AppArmor record: its fields win over the
        // outer (dbus-daemon's own pid, uid, …).
        for t in (Tokens {
            s: inner,
            pos: 0,
            enriched: false,
        }) {
            if t.key == "apparmor" {
                rec.kind = Cow::Borrowed(t.value);
                continue;
            }
            let key = Cow::Borrowed(alias(t.key));
            let v = value(&key, t.value, t.quote);
            add(&mut rec, key, v, true);
        }
    }
    if rec.kind.is_empty() {
        match record_type.and_then(kind_of_type) {
            Some(k) => rec.kind = Cow::Borrowed(k),
            None => return Err(ParseError::NotAppArmor),
        }
    }
    if let Some(t) = record_type {
        // One form whatever wrote the line: `type` the name auditd gives
        // the type, `type_number` its number.
        let (name, number) = type_name_number(t);
        rec.fields.insert(0, (Cow::Borrowed("type"), Value::Str(name)));
        if let Some(n) = number {
            rec.fields.insert(1, (Cow::Borrowed("type_number"), Value::Num(n)));
        }
    }
    add_names(&mut rec);
    Ok(rec)
}

/// The IP protocol numbers records carry, by name (as libapparmor names them).
fn protocol_name(n: i64) -> Option<&'static str> {
    Some(match n {
        0 => "ip",
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        41 => "ipv6",
        47 => "gre",
        58 => "icmpv6",
        132 => "sctp",
        136 => "udplite",
        255 => "raw",
        _ => return None,
    })
}

/// Where the kernel or a tool writes a field under another key than the one
/// people search for, add the searched-for key too (the raw one stays):
/// `protocol` by name (the number as `protocol_number`), `denied` for a
/// D-Bus record's `mask`, `name` for a capability's `capname`, `name2` for
/// `target`, `profile` and `peer_profile` for `label`, `peer_label` and
/// io_uring's `tcontext`, `comm` for `exe`, `member` for `method`, and
/// `laddr`/`lport`/`faddr`/`fport` for `saddr`/`src`/`daddr`/`dest`.
fn add_names(rec: &mut Record<'_>) {
    if let Some(n) = rec.num("protocol")
        && let Some(name) = protocol_name(n)
        && let Some(slot) = rec.fields.iter_mut().find(|(k, _)| k == "protocol")
    {
        slot.1 = Value::Str(Cow::Borrowed(name));
        rec.fields.push((Cow::Borrowed("protocol_number"), Value::Num(n)));
    }
    const ALIASES: &[(&str, &str)] = &[
        ("denied", "mask"),
        ("name", "capname"),
        ("name2", "target"),
        ("profile", "label"),
        ("peer_profile", "peer_label"),
        ("peer_profile", "tcontext"),
        ("comm", "exe"),
        ("member", "method"),
        ("laddr", "saddr"),
        ("lport", "src"),
        ("faddr", "daddr"),
        ("fport", "dest"),
    ];
    for (want, from) in ALIASES {
        if rec.get(want).is_none()
            && let Some(v) = rec.get(from).cloned()
        {
            rec.fields.push((Cow::Borrowed(want), v));
        }
    }
}

/// Parse raw bytes (any encoding): invalid UTF-8 is replaced, never fatal.
pub fn parse_bytes(line: &[u8]) -> Result<Record<'static>, ParseError> {
    let s = String::from_utf8_lossy(line);
    parse(&s).map(Record::into_owned)
}

/// Markers of lost audit records in kernel or audit messages.
pub fn loss_marker(line: &str) -> Option<u64> {
    if let Some(p) = line.find("audit_lost=") {
        let n: String = line[p + 11..].chars().take_while(|c| c.is_ascii_digit()).collect();
        return Some(n.parse().unwrap_or(1));
    }
    if line.contains("backlog limit exceeded") {
        return Some(1);
    }
    if let Some(p) = line.find(" callbacks suppressed")
        && line.contains("audit")
    {
        let before = &line[..p];
        let n: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Some(n.parse().unwrap_or(1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn never_panics_on_any_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_bytes(&data);
        }

        #[test]
        fn never_panics_on_near_records(
            prefix in prop::sample::select(vec!["", "type=AVC msg=audit(1.2:3): ", "audit: type=1400 audit(9.999:1): ", "AVC ", "[ 1.0] ", "type=USER_AVC msg=audit(1.2:3): pid=1 msg='"]),
            fields in prop::collection::vec(("[a-z_]{1,10}", "[ -~\\x1d]{0,12}", 0u8..4), 0..12),
        ) {
            let mut line = prefix.to_owned();
            line.push_str("apparmor=\"DENIED\" ");
            for (k, v, q) in &fields {
                match q {
                    0 => line.push_str(&format!("{k}=\"{v}\" ")),
                    1 => line.push_str(&format!("{k}={} ", v.replace(' ', ""))),
                    2 => line.push_str(&format!("{k}={} ", v.bytes().map(|b| format!("{b:02X}")).collect::<String>())),
                    _ => line.push_str(&format!("{v} ")),
                }
            }
            let r = parse(&line);
            // A record with `apparmor=` and no broken audit id always parses.
            prop_assert!(r.is_ok() || !prefix.contains("audit("), "{line}: {r:?}");
            if let Ok(r) = r {
                prop_assert_eq!(r.kind.as_ref(), "DENIED");
                prop_assert!(serde_json::to_string(&r).is_ok());
            }
        }

        #[test]
        fn hex_values_decode_to_what_was_encoded(name in "[ -~]{1,40}") {
            let hex: String = name.bytes().map(|b| format!("{b:02X}")).collect();
            let line = format!("apparmor=\"DENIED\" operation=\"open\" name={hex}");
            let r = parse(&line).unwrap();
            let got = r.str("name").unwrap().into_owned();
            prop_assert_eq!(got, name);
        }
    }

    fn json(line: &str) -> serde_json::Value {
        serde_json::to_value(parse(line).unwrap()).unwrap()
    }

    #[test]
    fn audit_log_avc() {
        let j = json(
            r#"type=AVC msg=audit(1279948288.415:39): apparmor="DENIED" operation="open" parent=12332 profile="/usr/sbin/cupsd" name="/home/user/.ssh/" pid=12333 comm="ls" requested_mask="r" denied_mask="r" fsuid=0 ouid=1000"#,
        );
        assert_eq!(j["kind"], "DENIED");
        assert_eq!(j["audit_id"], "1279948288.415:39");
        assert_eq!(j["type"], "AVC");
        assert_eq!(j["type_number"], 1400);
        assert_eq!(j["requested"], "r");
        assert_eq!(j["denied"], "r");
        assert_eq!(j["pid"], 12333);
        assert_eq!(j["ouid"], 1000);
    }

    #[test]
    fn journald_audit_transport_message() {
        let j = json(
            r#"AVC apparmor="DENIED" operation="capable" class="cap" profile="custom.x" pid=77 comm="ping" capability=13  capname="net_raw""#,
        );
        assert_eq!(j["kind"], "DENIED");
        assert!(j.get("audit_id").is_none());
        assert_eq!(j["capability"], 13);
        assert_eq!(j["capname"], "net_raw");
    }

    #[test]
    fn kernel_transport_and_hex() {
        let j = json(
            "audit: type=1400 audit(1700000000.123:456): apparmor=\"DENIED\" operation=\"open\" profile=\"custom.x\" name=2F746D702F6120622E747874 pid=5 comm=6D7920636F6D6D requested_mask=\"w\" denied_mask=\"w\" fsuid=0 ouid=0",
        );
        assert_eq!(j["type"], "AVC");
        assert_eq!(j["type_number"], 1400);
        assert_eq!(j["name"], "/tmp/a b.txt");
        assert_eq!(j["comm"], "my comm");
    }

    #[test]
    fn user_avc_inner_fields_win() {
        let j = json(
            r#"type=USER_AVC msg=audit(1375323416.656:167): pid=363 uid=102 auid=4294967295 ses=4294967295  msg='apparmor="DENIED" operation="dbus_bind"  bus="system" name="org.x" mask="bind" pid=2838 profile="/p"  exe="/bin/dbus-daemon" sauid=102 hostname=? addr=? terminal=?'"#,
        );
        assert_eq!(j["pid"], 2838);
        assert_eq!(j["uid"], 102);
        assert_eq!(j["bus"], "system");
        assert_eq!(j["exe"], "/bin/dbus-daemon");
    }

    #[test]
    fn separator_and_enriched_fields() {
        let j = json(
            "type=AVC msg=audit(1661734785.992:270): apparmor=\"ALLOWED\" operation=\"open\" profile=\"/usr/bin/dolphin\" name=\"/x\" pid=3483 comm=\"dolphin\" requested_mask=\"r\" denied_mask=\"r\" fsuid=1000 ouid=0\u{1d}FSUID=\"otis\" OUID=\"root\"",
        );
        assert_eq!(j["ouid"], 0);
        assert_eq!(j["FSUID"], "otis");
        assert_eq!(j["fsuid"], 1000);
    }

    #[test]
    fn apparmor_type_records_and_kinds() {
        let j = json(
            r#"type=APPARMOR_DENIED msg=audit(1181057184.959:7): type=1503 operation="exec" denied_mask="x" name="/bin/ping" pid=31938 profile="/bin/ping""#,
        );
        assert_eq!(j["kind"], "DENIED");
        let j = json(
            r#"audit: type=1400 audit(1.000:1): apparmor="KILLED" operation="signal" profile="custom.k" pid=9 comm="x" requested_mask="send" denied_mask="send" signal=kill peer="unconfined""#,
        );
        assert_eq!(j["kind"], "KILLED");
        assert_eq!(j["signal"], "kill");
    }

    #[test]
    fn rejects_what_is_not_apparmor() {
        assert_eq!(
            parse("Oct 29 07:55:58 host syslogd 1.5.0#2ubuntu6: restart.").unwrap_err(),
            ParseError::NotAppArmor
        );
        assert!(matches!(
            parse(r#"type=AVC msg=audit(12799====8288.415:39): apparmor="DENIED""#),
            Err(ParseError::BadAuditId(_))
        ));
        assert_eq!(parse("").unwrap_err(), ParseError::NotAppArmor);
    }

    #[test]
    fn fields_named_like_the_record_keys_are_kept_apart() {
        let j = json(r#"type=AVC msg=audit(1.001:2): apparmor="DENIED" operation="x" audit_id=6 kind=7"#);
        assert_eq!(j["audit_id"], "1.001:2");
        assert_eq!(j["kind"], "DENIED");
        assert_eq!(j["field_audit_id"], "6");
        assert_eq!(j["field_kind"], "7");
    }

    #[test]
    fn loss_markers() {
        assert_eq!(
            loss_marker("audit: audit_lost=42 audit_rate_limit=0 audit_backlog_limit=64"),
            Some(42)
        );
        assert_eq!(
            loss_marker("kernel: audit: audit_backlog=65 > audit_backlog_limit=64 backlog limit exceeded"),
            Some(1)
        );
        assert_eq!(loss_marker("kernel: audit: 36 callbacks suppressed"), Some(36));
        assert_eq!(loss_marker("apparmor=\"DENIED\""), None);
    }
}

#[cfg(test)]
mod unknown_type_tests {
    use super::*;

    #[test]
    fn unknown_numbered_types_parse_like_their_names() {
        for (n, kind) in [
            (1500, None),
            (1501, Some("AUDIT")),
            (1502, Some("ALLOWED")),
            (1503, Some("DENIED")),
            (1504, Some("HINT")),
            (1505, Some("STATUS")),
            (1506, Some("ERROR")),
            (1507, Some("KILLED")),
        ] {
            let line = format!(
                r#"type=UNKNOWN[{n}] msg=audit(1181057184.959:7): operation="exec" denied_mask="x" name="/bin/ping" pid=31938 profile="/bin/ping""#
            );
            match (parse(&line), kind) {
                (Ok(r), Some(k)) => {
                    assert_eq!(r.kind, k, "{line}");
                    assert_eq!(r.str("name").as_deref(), Some("/bin/ping"));
                }
                (Err(_), None) => {}
                (other, k) => panic!("{n}: {other:?}, wanted {k:?}"),
            }
        }
    }
}
