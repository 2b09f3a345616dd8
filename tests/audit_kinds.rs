//! One fixture per AppArmor record kind, so the parser's coverage stands
//! without the libapparmor corpus.

use armord::audit::parse;

/// (line, kind, field checks)
/// (line, kind, field checks)
type Case = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const CASES: &[Case] = &[
    (
        r#"type=AVC msg=audit(1700000000.100:1): apparmor="DENIED" operation="open" class="file" profile="custom.app" name="/etc/shadow" pid=42 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
        "DENIED",
        &[
            ("operation", "open"),
            ("class", "file"),
            ("name", "/etc/shadow"),
            ("requested", "r"),
            ("denied", "r"),
            ("pid", "42"),
        ],
    ),
    (
        r#"audit: type=1400 audit(1700000000.101:2): apparmor="DENIED" operation="capable" class="cap" profile="custom.app" pid=42 comm="ping" capability=13  capname="net_raw""#,
        "DENIED",
        &[("operation", "capable"), ("capability", "13"), ("capname", "net_raw")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.102:3): apparmor="DENIED" operation="create" class="net" profile="custom.app" pid=42 comm="curl" family="inet" sock_type="raw" protocol=1 requested="create" denied="create""#,
        "DENIED",
        &[
            ("family", "inet"),
            ("sock_type", "raw"),
            ("protocol", "icmp"),
            ("protocol_number", "1"),
            ("denied", "create"),
        ],
    ),
    (
        r#"audit: type=1400 audit(1700000000.103:4): apparmor="DENIED" operation="connect" class="net" profile="custom.app" pid=42 comm="app" family="unix" sock_type="stream" protocol=0 requested="send receive connect" denied="send receive connect" addr=none peer_addr="@/tmp/.X11-unix/X0" peer="unconfined""#,
        "DENIED",
        &[
            ("family", "unix"),
            ("peer_addr", "@/tmp/.X11-unix/X0"),
            ("denied", "send receive connect"),
        ],
    ),
    (
        r#"audit: type=1400 audit(1700000000.104:5): apparmor="DENIED" operation="signal" class="signal" profile="custom.app" pid=42 comm="kill" requested_mask="send" denied_mask="send" signal=term peer="custom.other""#,
        "DENIED",
        &[("signal", "term"), ("peer", "custom.other")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.105:6): apparmor="DENIED" operation="ptrace" class="ptrace" profile="custom.app" pid=42 comm="gdb" requested_mask="trace" denied_mask="trace" peer="unconfined""#,
        "DENIED",
        &[("operation", "ptrace"), ("denied", "trace")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.106:7): apparmor="DENIED" operation="mount" class="mount" info="failed mntpnt match" error=-13 profile="custom.app" name="/mnt/" pid=42 comm="mount" fstype="ext4" srcname="/dev/sdb1" flags="rw, nosuid""#,
        "DENIED",
        &[
            ("fstype", "ext4"),
            ("srcname", "/dev/sdb1"),
            ("flags", "rw, nosuid"),
            ("error", "-13"),
        ],
    ),
    (
        r#"type=USER_AVC msg=audit(1700000000.107:8): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='apparmor="DENIED" operation="dbus_method_call"  bus="system" path="/org/freedesktop/systemd1" interface="org.freedesktop.systemd1.Manager" member="StartUnit" mask="send" name="org.freedesktop.systemd1" pid=42 label="custom.app" peer_pid=1 peer_label="unconfined"  exe="/usr/bin/dbus-daemon" sauid=0 hostname=? addr=? terminal=?'"#,
        "DENIED",
        &[
            ("bus", "system"),
            ("member", "StartUnit"),
            ("mask", "send"),
            ("label", "custom.app"),
            ("pid", "42"),
        ],
    ),
    (
        r#"audit: type=1400 audit(1700000000.108:9): apparmor="DENIED" operation="exec" class="file" info="no new privs" error=-1 profile="custom.nginx" name="/bin/sh" pid=42 comm="nginx" requested_mask="x" denied_mask="x" fsuid=101 ouid=0 target="custom.nginx//null-/bin/sh""#,
        "DENIED",
        &[
            ("operation", "exec"),
            ("target", "custom.nginx//null-/bin/sh"),
            ("denied", "x"),
        ],
    ),
    (
        r#"[103975.623545] audit: type=1400 audit(1700000000.109:10): apparmor="DENIED" operation="change_onexec" info="no new privs" error=-1 namespace="root//lxd" profile="unconfined" name="system_tor" pid=42 comm="(tor)" target="system_tor""#,
        "DENIED",
        &[("operation", "change_onexec"), ("namespace", "root//lxd")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.110:11): apparmor="STATUS" operation="profile_load" profile="unconfined" name="custom.app" pid=42 comm="apparmor_parser""#,
        "STATUS",
        &[("operation", "profile_load")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.111:12): apparmor="STATUS" operation="profile_replace" info="same as current profile, skipping" profile="unconfined" name="custom.app" pid=42 comm="apparmor_parser""#,
        "STATUS",
        &[("operation", "profile_replace")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.112:13): apparmor="STATUS" operation="profile_remove" profile="unconfined" name="custom.app" pid=42 comm="apparmor_parser""#,
        "STATUS",
        &[("operation", "profile_remove")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.113:14): apparmor="ALLOWED" operation="open" class="file" profile="custom.trial" name="/etc/ssl/openssl.cnf" pid=42 comm="python3" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
        "ALLOWED",
        &[("profile", "custom.trial")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.114:15): apparmor="KILLED" operation="exec" class="file" profile="custom.strict" name="/usr/bin/wget" pid=42 comm="sh" requested_mask="x" denied_mask="x" fsuid=0 ouid=0"#,
        "KILLED",
        &[("name", "/usr/bin/wget")],
    ),
    (
        r#"audit: type=1400 audit(1700000000.115:16): apparmor="AUDIT" operation="getattr" class="file" profile="custom.app" name="/etc/hosts" pid=42 comm="app" requested_mask="r" fsuid=0 ouid=0"#,
        "AUDIT",
        &[("requested", "r")],
    ),
    (
        r#"type=APPARMOR_HINT msg=audit(1700000000.116:17): operation="clone" task=20401 pid=20400 profile="custom.app""#,
        "HINT",
        &[("task", "20401")],
    ),
    (
        r#"type=APPARMOR_ERROR msg=audit(1700000000.117:18): operation="profile_load" info="failed to unpack" error=-71 name="custom.bad" pid=42 comm="apparmor_parser""#,
        "ERROR",
        &[("error", "-71")],
    ),
];

#[test]
fn every_record_kind() {
    for (line, kind, checks) in CASES {
        let r = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(r.kind, *kind, "{line}");
        assert!(r.audit_id.is_some(), "{line}");
        for (k, v) in *checks {
            assert_eq!(r.str(k).as_deref(), Some(*v), "{k} in {line}");
        }
    }
}
