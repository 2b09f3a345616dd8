#!/bin/bash
# What learning costs the denial follower, side by side in one run:
#
#   benches/learning_rate.sh        (BENCH_PROFILES=1000, BENCH_RULES=100, BENCH_ROUNDS=3)
#
# A real `armord --simulate --bus none` owns PROFILES profiles in enforce
# mode and follows (through the fake journalctl) PROFILES x RULES records,
# each for one of them, each with a distinct path. In the "off" rounds the
# records are ALLOWED, which an enforce-mode profile's version would not
# have denied: parsed, de-duplicated, counted and re-logged, never learned.
# In the "on" rounds they are DENIED: the same work, and every one learned
# (PROFILES x RULES distinct rules). Reported: the denials thread's CPU and
# records per CPU-second for each, and after an "on" round the learned
# state on disk and armord's resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
profiles=${BENCH_PROFILES:-1000}
rules=${BENCH_RULES:-100}
rounds=${BENCH_ROUNDS:-3}
records=$((profiles * rules))
cargo build --release --locked -q
armord=$PWD/target/release/armord
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/p"
for i in $(seq 0 $((profiles - 1))); do
  printf 'profile custom.p%04d {\n  /etc/hostname r,\n}\n' "$i" > "$work/p/custom.p$(printf %04d "$i")"
done
printf 'state_dir = "st"\n[[source]]\npath = "p"\n[denials]\njournalctl = "%s"\nrate_limit_burst = 1000000\n[trial]\nmax_rules = %d\n' \
  "$PWD/tests/fixtures/fake_journalctl" "$rules" > "$work/c.toml"
python3 - "$work" "$records" "$profiles" <<'EOF'
import sys
work, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
msg = ('audit: type=1400 audit(1700000000.%03d:%d): apparmor="%s" operation="open" class="file" '
       'profile="custom.p%04d" name="/var/lib/data/%d" pid=%d comm="app" requested_mask="r" denied_mask="r" fsuid=0 ouid=0')
for kind, name in (("ALLOWED", "off"), ("DENIED", "on")):
    with open('%s/%s.json' % (work, name), 'w') as j:
        for i in range(n):
            m = msg % (i % 1000, i + 1, kind, i % p, i, 1000 + i % 30000)
            j.write('{"__CURSOR":"c%d","_BOOT_ID":"b","_TRANSPORT":"kernel","MESSAGE":%s}\n'
                    % (i, '"' + m.replace('\\', '\\\\').replace('"', '\\"') + '"'))
EOF
last="c$((records - 1))"
tck=$(getconf CLK_TCK)
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r)."
echo "$profiles owned profiles in enforce mode, $records records a round ($rules distinct paths a profile)."
echo
echo "| round | learning | denials thread CPU | records per CPU-second | learned rules | learned state on disk | armord RSS |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
  for mode in off on; do
    rm -rf "$work/st"
    FAKE_JOURNAL="$work/$mode.json" "$armord" --simulate --bus none --config "$work/c.toml" 2>/dev/null &
    pid=$!
    for _ in $(seq 200); do
      a=$(pgrep -n -f -- "--config $work/c.toml" || true)
      [ -n "$a" ] && [ "$(cat "/proc/$a/comm" 2>/dev/null)" = armord ] && { pid=$a; break; }
      sleep 0.01
    done
    until grep -qx "$last" <(head -n1 "$work/st/journal.cursor" 2>/dev/null); do sleep 0.05; done
    ticks=0
    for t in /proc/$pid/task/*; do
      if [ "$(cat "$t/comm")" = denials ]; then
        read -r -a f < "$t/stat"
        ticks=$(( ticks + f[13] + f[14] ))
      fi
    done
    cpu=$(awk -v n="$ticks" -v t="$tck" 'BEGIN { printf "%.2f", n / t }')
    rss=$(awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status")
    # Counts are written by the loop every 2 s; wait for a snapshot.
    sleep 3
    learned=$(cat "$work/st/learned.log" 2>/dev/null | wc -l)
    [ -s "$work/st/learned.json" ] && learned=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(p["current"]["files"]) + len(p["current"]["rules"]) for p in d["learned"]["profiles"].values()))' "$work/st/learned.json")
    disk=$(du -cb "$work"/st/learned.* 2>/dev/null | awk 'END { printf "%.1f MiB", $1 / 1048576 }')
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    awk -v r="$r" -v m="$mode" -v c="$cpu" -v n="$records" -v l="$learned" -v d="$disk" -v s="$rss" \
      'BEGIN { printf "| %d | %s | %s s | %.0f | %s | %s | %s |\n", r, m, c, (c > 0 ? n / c : 0), l, d, s }'
  done
done
