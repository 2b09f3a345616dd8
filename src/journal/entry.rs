//! One line of `journalctl --output=json`: the fields armord reads, and the
//! one rule for a field's value (a string, bytes for a value that is not
//! UTF-8, or a number).

/// The parts of a journal entry the follower uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    pub boot_id: String,
    pub transport: String,
    pub audit_type: Option<u32>,
    pub audit_serial: Option<u64>,
    pub source_realtime_us: Option<u64>,
    /// When journald received it (`__REALTIME_TIMESTAMP`).
    pub realtime_us: Option<u64>,
    pub message: String,
}

/// A field as journalctl writes it: a string, or (for a value that is not
/// UTF-8) an array of bytes, or a number; anything else counts as absent.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RawField<'a> {
    #[serde(borrow)]
    Str(std::borrow::Cow<'a, str>),
    Bytes(Vec<u8>),
    Num(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl RawField<'_> {
    fn into_string(self) -> Option<String> {
        match self {
            RawField::Str(s) => Some(s.into_owned()),
            RawField::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            RawField::Num(n) => Some(n.to_string()),
            RawField::Other(_) => None,
        }
    }
}

/// The fields the follower reads, borrowed from the line where possible;
/// the rest of the entry is skipped unparsed.
#[derive(serde::Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "__CURSOR", borrow)]
    cursor: Option<RawField<'a>>,
    #[serde(rename = "_BOOT_ID", borrow)]
    boot_id: Option<RawField<'a>>,
    #[serde(rename = "_TRANSPORT", borrow)]
    transport: Option<RawField<'a>>,
    #[serde(rename = "_AUDIT_TYPE", borrow)]
    audit_type: Option<RawField<'a>>,
    #[serde(rename = "_AUDIT_ID", borrow)]
    audit_id: Option<RawField<'a>>,
    #[serde(rename = "_SOURCE_REALTIME_TIMESTAMP", borrow)]
    source_realtime: Option<RawField<'a>>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime: Option<RawField<'a>>,
    #[serde(rename = "MESSAGE", borrow)]
    message: Option<RawField<'a>>,
}

/// A field of an entry already parsed as JSON, by the same rule as
/// `RawField`: a string, bytes or a number.
pub fn field_string(v: &serde_json::Value) -> Option<String> {
    use serde::Deserialize;
    RawField::deserialize(v).ok()?.into_string()
}

/// One of armord's re-logged denial entries as `armorctl` reads it back:
/// who journald says wrote it, where, when, and what armord wrote in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relogged {
    /// `_UID`, `_SYSTEMD_UNIT` and `_COMM`: set by journald, never by the writer.
    pub uid: Option<String>,
    pub unit: Option<String>,
    pub comm: Option<String>,
    /// `_HOSTNAME` and `_MACHINE_ID`: the node journald ran on.
    pub hostname: String,
    pub machine_id: String,
    /// When journald received it (`__REALTIME_TIMESTAMP`), µs.
    pub realtime_us: u64,
    /// `ARMORD_RECORD`: the record as JSON text, as the writer gave it.
    pub record: Option<String>,
    pub container_id: String,
    pub pod_uid: String,
}

#[derive(serde::Deserialize)]
struct RawRelogged<'a> {
    #[serde(rename = "_UID", borrow)]
    uid: Option<RawField<'a>>,
    #[serde(rename = "_SYSTEMD_UNIT", borrow)]
    unit: Option<RawField<'a>>,
    #[serde(rename = "_COMM", borrow)]
    comm: Option<RawField<'a>>,
    #[serde(rename = "_HOSTNAME", borrow)]
    hostname: Option<RawField<'a>>,
    #[serde(rename = "_MACHINE_ID", borrow)]
    machine_id: Option<RawField<'a>>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime: Option<RawField<'a>>,
    #[serde(rename = "ARMORD_RECORD", borrow)]
    record: Option<RawField<'a>>,
    #[serde(rename = "ARMORD_CONTAINER_ID", borrow)]
    container_id: Option<RawField<'a>>,
    #[serde(rename = "ARMORD_POD_UID", borrow)]
    pod_uid: Option<RawField<'a>>,
}

/// Parse one line of `journalctl --output=json` as a re-logged entry; only
/// the fields above are read, the rest skipped unparsed.
pub fn parse_relogged(line: &str) -> Option<Relogged> {
    let r: RawRelogged<'_> = serde_json::from_str(line).ok()?;
    let text = |f: Option<RawField<'_>>| f.and_then(RawField::into_string);
    Some(Relogged {
        uid: text(r.uid),
        unit: text(r.unit),
        comm: text(r.comm),
        hostname: text(r.hostname).unwrap_or_default(),
        machine_id: text(r.machine_id).unwrap_or_default(),
        realtime_us: text(r.realtime).and_then(|t| t.parse().ok()).unwrap_or(0),
        record: text(r.record),
        container_id: text(r.container_id).unwrap_or_default(),
        pod_uid: text(r.pod_uid).unwrap_or_default(),
    })
}

/// Parse one line of `journalctl --output=json`.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let r: RawEntry<'_> = serde_json::from_str(line).ok()?;
    let text = |f: Option<RawField<'_>>| f.and_then(RawField::into_string);
    fn num<T: std::str::FromStr>(f: Option<RawField<'_>>) -> Option<T> {
        f.and_then(RawField::into_string)?.parse().ok()
    }
    Some(Entry {
        cursor: text(r.cursor)?,
        boot_id: text(r.boot_id).unwrap_or_default(),
        transport: text(r.transport).unwrap_or_default(),
        audit_type: num(r.audit_type),
        audit_serial: num(r.audit_id),
        source_realtime_us: num(r.source_realtime),
        realtime_us: num(r.realtime),
        message: text(r.message).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_is_a_string_bytes_or_a_number_in_both_readers() {
        let line = json!({"__CURSOR": "c", "MESSAGE": [104, 105, 255], "_AUDIT_TYPE": 1400, "_BOOT_ID": "b"});
        let e = parse_entry(&line.to_string()).unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert_eq!(e.audit_type, Some(1400));
        assert_eq!(field_string(&line["MESSAGE"]).as_deref(), Some("hi\u{fffd}"));
        assert_eq!(field_string(&line["_AUDIT_TYPE"]).as_deref(), Some("1400"));
        assert_eq!(field_string(&line["_BOOT_ID"]).as_deref(), Some("b"));
        assert_eq!(field_string(&json!({"a": 1})), None);
        assert_eq!(field_string(&json!(null)), None);
    }
}
