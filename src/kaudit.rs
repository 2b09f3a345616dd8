//! The kernel audit subsystem's status over its netlink socket: read the
//! backlog limit and raise it, the way `auditctl -s` and `auditctl -b` do.
//!
//! Why armord touches it: AppArmor writes its records with `GFP_ATOMIC`, so
//! when the kernel's audit queue holds more than `backlog_limit` records (64
//! on a host without auditd), a new record is dropped at once. Without auditd
//! the kernel also prints each record on the console before the queue moves
//! on, so a burst of denials overflows 64 easily; and the kernel's warning
//! about it (`audit_backlog=… > audit_backlog_limit=…`) shares the console's
//! rate limit that the burst has already spent, so the loss is silent. A
//! larger limit costs memory only while records wait (an `sk_buff` each).
//!
//! The wire format is `linux/netlink.h`'s `nlmsghdr` followed by
//! `linux/audit.h`'s `struct audit_status`; encoding and decoding are pure
//! functions, tested without a kernel.

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, setsockopt, socket, sockopt,
};
use std::os::fd::AsRawFd;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const AUDIT_GET: u16 = 1000;
const AUDIT_SET: u16 = 1001;
const AUDIT_STATUS_BACKLOG_LIMIT: u32 = 0x0010;
/// `struct audit_status` up to `backlog`: what every kernel since 2.6 sends.
const STATUS_MIN_LEN: usize = 8 * 4;
/// The whole `struct audit_status` of current kernels (11 `u32`s).
const STATUS_LEN: usize = 11 * 4;

#[derive(Debug, thiserror::Error)]
pub enum KauditError {
    #[error("cannot open the kernel's audit netlink socket: {0}")]
    Socket(#[source] nix::Error),
    #[error("cannot talk to the kernel's audit netlink socket: {0}")]
    Io(#[source] nix::Error),
    #[error("the kernel refused the audit request ({what}): {err}{hint}")]
    Refused {
        what: &'static str,
        err: nix::Error,
        hint: &'static str,
    },
    #[error("the kernel's audit reply is malformed: {0}")]
    Malformed(String),
}

/// The fields of the kernel's audit status that armord reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub enabled: u32,
    /// The audit daemon's process ID; 0 when none is registered.
    pub pid: u32,
    pub backlog_limit: u32,
    /// Records the kernel counted as lost since boot. Without an audit
    /// daemon this includes records only skipped on the console (the
    /// kernel's printk rate limit), so it overstates real loss there.
    pub lost: u32,
    /// Records waiting in the queue now.
    pub backlog: u32,
}

/// What [`raise_backlog_limit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// The limit was already at least the wanted one (or 0: unlimited).
    Already(u32),
    /// Raised from the first value to the second.
    From(u32, u32),
}

/// One netlink message asking for the status (`set`: `None`) or setting the
/// backlog limit.
pub fn encode(seq: u32, set_backlog_limit: Option<u32>) -> Vec<u8> {
    let (kind, flags, payload) = match set_backlog_limit {
        None => (AUDIT_GET, NLM_F_REQUEST, Vec::new()),
        Some(limit) => {
            let mut p = vec![0u8; STATUS_LEN];
            p[0..4].copy_from_slice(&AUDIT_STATUS_BACKLOG_LIMIT.to_ne_bytes());
            p[20..24].copy_from_slice(&limit.to_ne_bytes());
            (AUDIT_SET, NLM_F_REQUEST | NLM_F_ACK, p)
        }
    };
    let len = NLMSG_HDRLEN + payload.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&payload);
    m
}

/// One message the kernel sent back, as far as armord cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(Status),
    /// An acknowledgement: 0, or a negative errno.
    Ack(i32),
    /// Anything else (another sequence number, a message type not asked for).
    Other,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The messages in one datagram, for request `seq`.
pub fn decode(datagram: &[u8], seq: u32) -> Result<Vec<Reply>, KauditError> {
    let bad = |why: &str| KauditError::Malformed(why.to_owned());
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let len = u32_at(datagram, at).ok_or_else(|| bad("short header"))? as usize;
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            return Err(bad(&format!("message length {len} at byte {at} of {}", datagram.len())));
        }
        let kind = u16_at(datagram, at + 4).ok_or_else(|| bad("short header"))?;
        let their_seq = u32_at(datagram, at + 8).ok_or_else(|| bad("short header"))?;
        let body = &datagram[at + NLMSG_HDRLEN..at + len];
        out.push(match kind {
            _ if their_seq != seq => Reply::Other,
            NLMSG_ERROR => {
                let e = u32_at(body, 0).ok_or_else(|| bad("acknowledgement without an error code"))?;
                Reply::Ack(e as i32)
            }
            AUDIT_GET if body.len() >= STATUS_MIN_LEN => Reply::Status(Status {
                enabled: u32_at(body, 4).unwrap_or(0),
                pid: u32_at(body, 12).unwrap_or(0),
                backlog_limit: u32_at(body, 20).unwrap_or(0),
                lost: u32_at(body, 24).unwrap_or(0),
                backlog: u32_at(body, 28).unwrap_or(0),
            }),
            AUDIT_GET => return Err(bad(&format!("status of {} bytes", body.len()))),
            _ => Reply::Other,
        });
        // Messages are aligned to 4 bytes.
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// The new limit, if the current one should be raised to `want`.
pub fn to_raise(current: u32, want: u32) -> Option<u32> {
    // 0 in the kernel means "no limit": nothing to raise.
    (want > 0 && current != 0 && current < want).then_some(want)
}

struct Link {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

impl Link {
    fn open() -> Result<Link, KauditError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkAudit,
        )
        .map_err(KauditError::Socket)?;
        // The kernel answers at once or not at all; never hang the daemon.
        setsockopt(&fd, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(2, 0)).map_err(KauditError::Io)?;
        Ok(Link { fd, seq: 0 })
    }

    /// Send one request and read until its answer: the status for a query,
    /// the acknowledgement for a change.
    fn ask(&mut self, what: &'static str, set: Option<u32>) -> Result<Option<Status>, KauditError> {
        self.seq += 1;
        let msg = encode(self.seq, set);
        sendto(self.fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())
            .map_err(|err| refused(what, err))?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(KauditError::Io)?;
            for reply in decode(&buf[..n], self.seq)? {
                match reply {
                    Reply::Ack(0) if set.is_some() => return Ok(None),
                    Reply::Ack(0) | Reply::Other => {}
                    Reply::Ack(e) => return Err(refused(what, nix::Error::from_raw(-e))),
                    Reply::Status(s) if set.is_none() => return Ok(Some(s)),
                    Reply::Status(_) => {}
                }
            }
        }
    }
}

fn refused(what: &'static str, err: nix::Error) -> KauditError {
    let hint = match err {
        nix::Error::EPERM => " (armord needs CAP_AUDIT_CONTROL in the host's namespaces)",
        nix::Error::ECONNREFUSED => " (not available inside a user namespace)",
        _ => "",
    };
    KauditError::Refused { what, err, hint }
}

/// The kernel's audit status: its backlog limit, records lost since boot,
/// the audit daemon registered (needs CAP_AUDIT_CONTROL).
pub fn status() -> Result<Status, KauditError> {
    Link::open()?
        .ask("status", None)?
        .ok_or_else(|| KauditError::Malformed("no status in the reply".into()))
}

/// Raise the kernel's audit backlog limit to `want` when it is lower; never
/// lower it (auditd's rules or an operator may have set more).
pub fn raise_backlog_limit(want: u32) -> Result<Raised, KauditError> {
    let mut link = Link::open()?;
    let now = link
        .ask("status", None)?
        .ok_or_else(|| KauditError::Malformed("no status in the reply".into()))?;
    match to_raise(now.backlog_limit, want) {
        None => Ok(Raised::Already(now.backlog_limit)),
        Some(limit) => {
            link.ask("set the backlog limit", Some(limit))?;
            Ok(Raised::From(now.backlog_limit, limit))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, kind: u16, seq: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m
    }

    fn status_reply(seq: u32, fields: &[u32]) -> Vec<u8> {
        let mut m = header(NLMSG_HDRLEN + fields.len() * 4, AUDIT_GET, seq);
        for f in fields {
            m.extend_from_slice(&f.to_ne_bytes());
        }
        m
    }

    fn ack(seq: u32, err: i32) -> Vec<u8> {
        let mut m = header(NLMSG_HDRLEN + 4 + NLMSG_HDRLEN, NLMSG_ERROR, seq);
        m.extend_from_slice(&err.to_ne_bytes());
        m.extend_from_slice(&header(NLMSG_HDRLEN, AUDIT_SET, seq));
        m
    }

    #[test]
    fn a_query_is_a_bare_header_and_a_change_sets_only_the_backlog_limit() {
        let q = encode(7, None);
        assert_eq!(q.len(), NLMSG_HDRLEN);
        assert_eq!(u32_at(&q, 0), Some(16));
        assert_eq!(u16_at(&q, 4), Some(AUDIT_GET));
        assert_eq!(u16_at(&q, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&q, 8), Some(7));

        let s = encode(8, Some(8192));
        assert_eq!(s.len(), NLMSG_HDRLEN + STATUS_LEN);
        assert_eq!(u32_at(&s, 0), Some((NLMSG_HDRLEN + STATUS_LEN) as u32));
        assert_eq!(u16_at(&s, 4), Some(AUDIT_SET));
        assert_eq!(u16_at(&s, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        let body = &s[NLMSG_HDRLEN..];
        assert_eq!(
            u32_at(body, 0),
            Some(AUDIT_STATUS_BACKLOG_LIMIT),
            "mask: the backlog limit alone"
        );
        assert_eq!(u32_at(body, 20), Some(8192));
        let others: Vec<u32> = (1..11)
            .filter(|i| *i != 5)
            .filter_map(|i| u32_at(body, i * 4))
            .collect();
        assert!(others.iter().all(|v| *v == 0), "no other field set: {others:?}");
    }

    #[test]
    fn a_status_reply_of_an_old_or_a_new_kernel_is_read() {
        // mask, enabled, failure, pid, rate_limit, backlog_limit, lost, backlog
        let old = status_reply(3, &[0, 1, 1, 0, 0, 64, 12, 5]);
        let new = status_reply(3, &[0, 1, 1, 411, 0, 8192, 0, 0, 0x7f, 60000, 0]);
        assert_eq!(
            decode(&old, 3).unwrap(),
            vec![Reply::Status(Status {
                enabled: 1,
                pid: 0,
                backlog_limit: 64,
                lost: 12,
                backlog: 5
            })]
        );
        let Reply::Status(s) = &decode(&new, 3).unwrap()[0] else {
            panic!("not a status")
        };
        assert_eq!((s.pid, s.backlog_limit), (411, 8192));
    }

    #[test]
    fn an_ack_and_a_status_in_one_datagram_are_both_read_and_other_requests_ignored() {
        let mut d = ack(4, 0);
        d.extend(status_reply(3, &[0, 1, 1, 0, 0, 64, 0, 0]));
        d.extend(ack(4, -1));
        let r = decode(&d, 4).unwrap();
        assert_eq!(r, vec![Reply::Ack(0), Reply::Other, Reply::Ack(-1)]);
    }

    #[test]
    fn a_truncated_or_lying_message_is_an_error_not_a_panic() {
        let good = status_reply(1, &[0, 1, 1, 0, 0, 64, 0, 0]);
        for cut in 0..good.len() {
            let r = decode(&good[..cut], 1);
            if cut >= NLMSG_HDRLEN {
                assert!(r.is_err(), "cut at {cut}: {r:?}");
            } else {
                assert_eq!(r.unwrap(), vec![], "cut at {cut}");
            }
        }
        let mut lying = good.clone();
        lying[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(decode(&lying, 1).is_err());
        let short = status_reply(1, &[0, 1, 1]);
        assert!(decode(&short, 1).is_err());
    }

    #[test]
    fn the_limit_is_only_ever_raised() {
        assert_eq!(to_raise(64, 8192), Some(8192));
        assert_eq!(to_raise(8192, 8192), None);
        assert_eq!(to_raise(65536, 8192), None, "auditd's larger limit stays");
        assert_eq!(to_raise(0, 8192), None, "0 is unlimited");
        assert_eq!(to_raise(64, 0), None, "0 in the configuration: leave it alone");
    }
}
