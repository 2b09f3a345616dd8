//! What a journal entry is (an AppArmor record, a loss marker or
//! anything else), and the memory of records already handled: the same
//! record arrives over both the audit and the kernel transport.

use super::Entry;
use crate::audit::{self, AuditId, Record, record_type};
use std::collections::{HashSet, VecDeque};

/// A denial (or any AppArmor record) ready to be handled once.
#[derive(Debug, Clone)]
pub struct Event {
    pub boot_id: String,
    pub record: Record<'static>,
}

impl Event {
    pub fn key(&self) -> Option<(String, AuditId)> {
        Some((self.boot_id.clone(), self.record.audit_id?))
    }
}

/// What one journal entry is.
#[derive(Debug)]
pub enum Classified {
    Event(Event),
    /// The kernel or auditd says records were lost.
    Lost(u64),
    /// The kernel's console copy of audit records was rate-limited
    /// (`kauditd_printk_skb: N callbacks suppressed`): lost only when the
    /// audit transport does not carry the records.
    ConsoleSuppressed(u64),
    Other,
}

/// Keep AppArmor records from the audit transport (`AVC`, and `USER_AVC`
/// for D-Bus)
/// and from the kernel transport; notice loss markers.
pub fn classify(e: &Entry) -> Classified {
    let audit = e.transport == "audit";
    // An AppArmor record is never a loss marker: one search decides.
    let apparmor = e.message.contains("apparmor=");
    if !apparmor
        && (audit || e.transport == "kernel")
        && let Some(n) = audit::loss_marker(&e.message)
    {
        if e.message.contains("callbacks suppressed") {
            return Classified::ConsoleSuppressed(n);
        }
        return Classified::Lost(n);
    }
    let wanted = match e.transport.as_str() {
        "audit" => matches!(e.audit_type, Some(record_type::AVC | record_type::USER_AVC)) || apparmor,
        "kernel" => apparmor,
        _ => false,
    };
    if !wanted {
        return Classified::Other;
    }
    let Ok(mut record) = audit::parse(&e.message).map(Record::into_owned) else {
        return Classified::Other;
    };
    if record.audit_id.is_none()
        && let (Some(serial), Some(us)) = (e.audit_serial, e.source_realtime_us)
    {
        record.audit_id = Some(AuditId {
            epoch: us / 1_000_000,
            millis: ((us / 1000) % 1000) as u32,
            serial,
        });
    }
    Classified::Event(Event {
        boot_id: e.boot_id.clone(),
        record,
    })
}

/// Remembers recently handled keys (boot id + audit id), bounded.
#[derive(Debug)]
pub struct Dedupe {
    seen: HashSet<(String, AuditId)>,
    order: VecDeque<(String, AuditId)>,
    cap: usize,
}

impl Dedupe {
    pub fn new(cap: usize) -> Self {
        Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }
    /// The remembered keys, oldest first.
    pub fn recent(&self) -> &VecDeque<(String, AuditId)> {
        &self.order
    }

    /// True the first time a key is offered.
    pub fn first(&mut self, key: (String, AuditId)) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(key.clone());
        self.seen.insert(key);
        true
    }
}

/// How many recently handled keys are remembered: the same record arrives
/// over the audit and the kernel transport within moments of each other, so
/// a window of this many records is ample, and memory stays small and flat.
pub(super) const DEDUPE_KEYS: usize = 8192;
