//! Audit parser throughput on one core.
//!
//! `cargo bench --bench audit -- --generate FILE N` writes N mixed lines;
//! `cargo bench --bench audit -- FILE` parses them and prints records/s.
//! `benches/audit_vs_libapparmor.sh` runs both and libapparmor's Python
//! binding on the same lines, side by side.

use std::io::Write;
use std::time::Instant;

const TEMPLATES: &[&str] = &[
    r#"type=AVC msg=audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="open" profile="custom.app" name="/etc/secret{n}" pid={pid} comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
    r#"[ 9{ms}.492562] audit: type=1400 audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="exec" info="no new privs" error=-1 profile="custom.nginx" name="/bin/sh" pid={pid} comm="nginx" requested_mask="x" denied_mask="x" fsuid=101 ouid=0 target="custom.nginx//null-/bin/sh""#,
    r#"type=AVC msg=audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="capable" profile="custom.app" pid={pid} comm="ping" capability=13  capname="net_raw""#,
    r#"Jun 19 12:00:55 node kernel: [4475115.459952] audit: type=1400 audit(1700000000.{ms}:{n}): apparmor="ALLOWED" operation="connect" profile="custom.trial" pid={pid} comm="curl" family="inet6" sock_type="stream" protocol=6 requested_mask="send receive connect" denied_mask="send receive connect""#,
    r#"type=AVC msg=audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="signal" profile="custom.app" pid={pid} comm="kill" requested_mask="send" denied_mask="send" signal=term peer="unconfined""#,
    r#"[ 9{ms}.492562] audit: type=1400 audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="ptrace" profile="custom.app" pid={pid} comm="gdb" requested_mask="trace" denied_mask="trace" peer="custom.other""#,
    r#"type=USER_AVC msg=audit(1700000000.{ms}:{n}): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='apparmor="DENIED" operation="dbus_method_call"  bus="system" path="/org/freedesktop/systemd1" interface="org.freedesktop.systemd1.Manager" member="StartUnit" mask="send" name="org.freedesktop.systemd1" pid={pid} label="custom.app" peer_pid=1 peer_label="unconfined"  exe="/usr/bin/dbus-daemon" sauid=0 hostname=? addr=? terminal=?'"#,
    r#"[ 9{ms}.492562] audit: type=1400 audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="mkdir" profile="custom.app" name="/var/lib/app/cache{n}/" pid={pid} comm="app" requested_mask="c" denied_mask="c" fsuid=1000 ouid=1000"#,
    r#"type=AVC msg=audit(1700000000.{ms}:{n}): apparmor="STATUS" operation="profile_replace" info="same as current profile, skipping" profile="unconfined" name="custom.app" pid={pid} comm="apparmor_parser""#,
    r#"[ 9{ms}.492562] audit: type=1400 audit(1700000000.{ms}:{n}): apparmor="DENIED" operation="open" profile="custom.app" name=2F746D702F612062{hex} pid={pid} comm=6D792070726F67 requested_mask="wc" denied_mask="wc" fsuid=1000 ouid=1000"#,
    r#"type=AVC msg=audit(1700000000.{ms}:{n}): apparmor="ALLOWED" operation="open" profile="custom.trial" name="/usr/lib/x86_64-linux-gnu/libssl.so.3" pid={pid} comm="sh" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
    r#"Oct 29 07:55:58 node systemd[1]: Started session {n} of user root."#,
];

fn generate(path: &str, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create output"));
    for i in 0..n {
        let t = TEMPLATES[i % TEMPLATES.len()];
        let line = t
            .replace("{ms}", &format!("{:03}", i % 1000))
            .replace("{n}", &i.to_string())
            .replace("{pid}", &(1000 + i % 30000).to_string())
            .replace("{hex}", &format!("{:02X}", 0x30 + i % 10));
        writeln!(f, "{line}").expect("write");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.as_slice() {
        [g, path, n] if g == "--generate" => generate(path, n.parse().unwrap_or(100_000)),
        [path] => {
            let text = std::fs::read_to_string(path).expect("read lines");
            let lines: Vec<&str> = text.lines().collect();
            // Warm up, then the best of five passes.
            let mut best = f64::MAX;
            let mut ok = 0;
            for _ in 0..6 {
                let t = Instant::now();
                ok = 0;
                for l in &lines {
                    if let Ok(r) = std::hint::black_box(armord::audit::parse(l)) {
                        ok += 1;
                        std::hint::black_box(&r);
                    }
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "armord {:.0} records/s ({} lines, {ok} AppArmor records)",
                lines.len() as f64 / best,
                lines.len()
            );
        }
        _ => {
            // `cargo bench` with no arguments: a quick run on generated lines.
            let path = std::env::temp_dir().join(format!("armord-audit-bench-{}.log", std::process::id()));
            let p = path.to_string_lossy().into_owned();
            generate(&p, 100_000);
            let text = std::fs::read_to_string(&path).expect("read lines");
            let t = Instant::now();
            let ok = text.lines().filter(|l| armord::audit::parse(l).is_ok()).count();
            let dt = t.elapsed().as_secs_f64();
            let _ = std::fs::remove_file(&path);
            println!(
                "armord {:.0} records/s (100000 lines, {ok} AppArmor records)",
                100_000.0 / dt
            );
        }
    }
}
