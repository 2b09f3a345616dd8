#!/bin/bash
# armorctl denials --summary over a fleet's journal directory, as
# systemd-journal-remote fills it, side by side with journalctl alone:
#
#   benches/fleet_summary.sh     (BENCH_ENTRIES=1000000 BENCH_HOSTS=100 BENCH_ROUNDS=2)
#
# 1. BENCH_HOSTS journal files written by the real systemd-journal-remote
#    from export-format input: BENCH_ENTRIES re-logged denial entries in all
#    (armord's fields as it writes them: 40 profiles, 600 targets, 20
#    containers a host), and 1% more entries forged by a user's process.
# 2. Each round, one after the other over the same files:
#    - `journalctl --directory D --output=json MESSAGE_ID=… | wc -l`, the
#      ceiling: the same entries read, nothing done with them;
#    - `armorctl denials --summary` by denial (the default), by host and by
#      profile.
#    Wall time, CPU time, and peak RSS (VmHWM) of armorctl itself and of
#    the journalctl under it, sampled from /proc every 20 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
entries=${BENCH_ENTRIES:-1000000}
hosts=${BENCH_HOSTS:-100}
rounds=${BENCH_ROUNDS:-2}
remote=/lib/systemd/systemd-journal-remote
[ -x "$remote" ] || { echo "install systemd-journal-remote" >&2; exit 1; }
cargo build --release --locked -q --bin armorctl
armorctl=$PWD/target/release/armorctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/remote"
printf 'state_dir = "%s/st"\n' "$work" > "$work/c.toml"

t0=$(date +%s)
python3 - "$work/remote" "$entries" "$hosts" "$remote" <<'EOF'
import json, subprocess, sys
out, n, hosts, remote = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
per = n // hosts
mid = "3c1f6a0e8b2d4c57a9e4d21b7f5c8e90"
for h in range(hosts):
    host = "node-%03d" % h
    p = subprocess.Popen([remote, "--output=%s/remote-%s.journal" % (out, host), "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w = p.stdin
    base = 1_700_000_000_000_000 + h * 7
    for i in range(per + per // 100):
        forged = i >= per
        prof = "custom.app%02d" % (i % 40)
        name = "/var/lib/data/%d/file" % (i * 7 % 600)
        cid = "%064x" % (h * 20 + i % 20)
        rec = {"kind": "DENIED", "audit_id": "1700000000.%03d:%d" % (i % 1000, i), "operation": "open",
               "class": "file", "profile": prof, "name": name, "pid": 1000 + i % 5000, "comm": "app",
               "requested_mask": "r", "denied_mask": "r", "fsuid": 0, "ouid": 0}
        f = [("__REALTIME_TIMESTAMP", str(base + i * 1000)), ("__MONOTONIC_TIMESTAMP", str(i * 1000)),
             ("_BOOT_ID", "%032x" % (h + 1)), ("_MACHINE_ID", "%032x" % (0xabc000 + h)), ("_HOSTNAME", host),
             ("_TRANSPORT", "journal"), ("PRIORITY", "4"), ("SYSLOG_IDENTIFIER", "armord")]
        if forged:
            f += [("_UID", "1000"), ("_GID", "1000"), ("_COMM", "logger"), ("_SYSTEMD_UNIT", "user@1000.service")]
        else:
            f += [("_UID", "0"), ("_GID", "0"), ("_COMM", "armord"), ("_SYSTEMD_UNIT", "armord.service"), ("_PID", "812")]
        f += [("MESSAGE_ID", mid),
              ("MESSAGE", 'apparmor="DENIED" operation="open" profile="%s" name="%s" pid=%d comm="app" denied_mask="r"' % (prof, name, 1000 + i % 5000)),
              ("ARMORD_KIND", "DENIED"), ("ARMORD_PROFILE", prof), ("ARMORD_OPERATION", "open"), ("ARMORD_NAME", name),
              ("ARMORD_REQUESTED", "r"), ("ARMORD_DENIED", "r"), ("ARMORD_PID", str(1000 + i % 5000)), ("ARMORD_COMM", "app"),
              ("ARMORD_AUDIT_ID", rec["audit_id"]), ("ARMORD_AUDIT_KEY", "%032x %s" % (h + 1, rec["audit_id"])),
              ("ARMORD_CONTAINER_ID", cid), ("ARMORD_CONTAINER_RUNTIME", "containerd"),
              ("ARMORD_RECORD", json.dumps(rec, separators=(",", ":")))]
        w.write(("".join("%s=%s\n" % kv for kv in f) + "\n").encode())
    w.close()
    p.wait()
EOF
t1=$(date +%s)
echo "fixture: $entries re-logged entries (+1% forged) from $hosts hosts, written by systemd-journal-remote in $((t1 - t0)) s; $(du -sh "$work/remote" | cut -f1) in $(ls "$work/remote" | wc -l) files"
echo
echo "| round | command | wall | CPU (armorctl + journalctl) | peak RSS armorctl | peak RSS journalctl | lines out |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
python3 - "$r" "$work" "$armorctl" <<'EOF'
import os, subprocess, sys, time
r, work, armorctl = sys.argv[1], sys.argv[2], sys.argv[3]
D = work + "/remote"
mid = "MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90"
def hwm(pid):
    try:
        for l in open("/proc/%d/status" % pid):
            if l.startswith("VmHWM:"):
                return int(l.split()[1])
    except OSError:
        pass
    return 0
def children(pid):
    try:
        return [int(c) for c in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
    except OSError:
        return []
def cpu(pid):
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0
def measure(label, argv, shell=False):
    t = time.monotonic()
    p = subprocess.Popen(argv, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = {}
    cpus = {}
    lines = [0]
    import threading
    def count():
        for _ in p.stdout:
            lines[0] += 1
    th = threading.Thread(target=count); th.start()
    while p.poll() is None:
        for pid in [p.pid] + children(p.pid):
            comm = open("/proc/%d/comm" % pid).read().strip() if os.path.exists("/proc/%d/comm" % pid) else "?"
            peak[comm] = max(peak.get(comm, 0), hwm(pid))
            cpus[(comm, pid)] = cpu(pid)
        time.sleep(0.02)
    th.join()
    wall = time.monotonic() - t
    c = sum(cpus.values())
    a = peak.get("armorctl", 0); j = peak.get("journalctl", 0)
    print("| %s | %s | %.1f s | %.1f s | %s | %.1f MiB | %d |" % (r, label, wall, c,
          ("%.1f MiB" % (a / 1024)) if a else "-", j / 1024, lines[0]))
    sys.stdout.flush()
measure("`journalctl -D … -o json " + "MESSAGE_ID=… \\| wc -l`",
        "journalctl --directory=%s --output=json --all --no-pager %s" % (D, mid), shell=True)
cfg = work + "/c.toml"
measure("`armorctl denials --summary -D …`", [armorctl, "--config", cfg, "denials", "--summary", "--directory", D])
measure("`armorctl denials --summary --by host -D …`", [armorctl, "--config", cfg, "denials", "--summary", "--by", "host", "--directory", D])
measure("`armorctl denials --summary --by profile -D …`", [armorctl, "--config", cfg, "denials", "--summary", "--by", "profile", "--directory", D])
EOF
done
echo
echo "$(journalctl --version | head -n1); $(nproc) CPUs"
