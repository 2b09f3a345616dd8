#!/bin/bash
# The denial follower's rate on one core, and journalctl's own:
#
#   benches/follower_rate.sh            (BENCH_RECORDS=200000, BENCH_ROUNDS=3)
#
# 1. RECORDS kernel-transport AppArmor records (distinct names) replayed by
#    the fake journalctl into a real `armord --simulate --bus none`: the
#    wall time until the saved cursor reaches the last record, and the CPU
#    time of armord's `denials` thread (parse, de-duplicate, count, re-log
#    under the rate limit), as records per CPU-second of that one thread.
#    Each round runs twice, side by side: the records about profiles armord
#    does not own (nothing to learn), then the same records about the
#    profile it owns (each one a lesson for its learned rules: the first
#    256 distinct accesses logged and fsynced, the rest counted as dropped).
# 2. With systemd-journal-remote installed: the same records written into a
#    journal file, and the rate at which `journalctl --output=json` emits
#    them, the ceiling no follower of journalctl passes.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${BENCH_RECORDS:-200000}
rounds=${BENCH_ROUNDS:-3}
cargo build --release --locked -q
armord=$PWD/target/release/armord
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/p"
printf 'profile custom.p0 {\n  /** r,\n}\n' > "$work/p/custom.p0"
printf 'state_dir = "st"\n[[source]]\npath = "p"\n[denials]\njournalctl = "%s"\nscope = "all"\n' \
  "$PWD/tests/fixtures/fake_journalctl" > "$work/c.toml"
python3 - "$work" "$records" <<'EOF'
import sys
work, n = sys.argv[1], int(sys.argv[2])
msg = ('audit: type=1400 audit(1700000000.%03d:%d): apparmor="DENIED" operation="open" class="file" '
       'profile="custom.p%04d" name="/var/lib/data/%d" pid=%d comm="app" requested_mask="r" denied_mask="r" fsuid=0 ouid=0')
def line(i, m):
    return ('{"__CURSOR":"c%d","_BOOT_ID":"b","_TRANSPORT":"kernel","MESSAGE":%s}\n'
            % (i, '"' + m.replace('\\', '\\\\').replace('"', '\\"') + '"'))
with open(work + '/journal.json', 'w') as j, open(work + '/learn.json', 'w') as l, open(work + '/export.txt', 'w') as e:
    for i in range(n):
        m = msg % (i % 1000, i, i % 1000, i, 1000 + i % 30000)
        j.write(line(i, m))
        l.write(line(i, m.replace('profile="custom.p%04d"' % (i % 1000), 'profile="custom.p0"')))
        e.write('__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n'
                '_TRANSPORT=kernel\nMESSAGE=%s\n\n' % (1700000000000000 + i, 1000000 + i, m))
EOF
last="c$((records - 1))"
tck=$(getconf CLK_TCK)
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r); $records records a round."
echo
echo "| round | records | wall, start to last cursor | records/s (wall) | denials thread CPU | records per CPU-second |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
 for journal in journal learn; do
  rm -rf "$work/st"
  s=$(date +%s.%N)
  FAKE_JOURNAL="$work/$journal.json" "$armord" --simulate --bus none --config "$work/c.toml" 2>/dev/null &
  pid=$!
  # $! may be a shell that runs armord: find armord itself.
  for _ in $(seq 100); do
    a=$(pgrep -n -f -- "--config $work/c.toml" || true)
    [ -n "$a" ] && [ "$(cat "/proc/$a/comm" 2>/dev/null)" = armord ] && { pid=$a; break; }
    sleep 0.01
  done
  until grep -qx "$last" <(head -n1 "$work/st/journal.cursor" 2>/dev/null); do sleep 0.02; done
  e=$(date +%s.%N)
  # The follower thread and the one it starts to read journalctl's stderr
  # (which inherits its name).
  ticks=0
  for t in /proc/$pid/task/*; do
    if [ "$(cat "$t/comm")" = denials ]; then
      read -r -a f < "$t/stat"
      ticks=$(( ticks + f[13] + f[14] ))
    fi
  done
  cpu=$(awk -v n="$ticks" -v t="$tck" 'BEGIN { printf "%.2f", n / t }')
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  what="not owned"; [ "$journal" = learn ] && what="owned, learned"
  awk -v r="$r" -v w="$what" -v s="$s" -v e="$e" -v c="$cpu" -v n="$records" \
    'BEGIN { printf "| %d | %s | %.2f s | %.0f | %s s | %.0f |\n", r, w, e - s, n / (e - s), c, (c > 0 ? n / c : 0) }'
 done
done
remote=/lib/systemd/systemd-journal-remote
if [ -x "$remote" ]; then
  "$remote" --output="$work/bench.journal" "$work/export.txt" >/dev/null 2>&1 || true
  echo
  echo "| journalctl --output=json over the same $records records | entries/s |"
  echo "|---|---|"
  for r in $(seq "$rounds"); do
    s=$(date +%s.%N)
    n=$(journalctl --file="$work/bench*.journal" --output=json --no-pager | wc -l)
    e=$(date +%s.%N)
    awk -v r="$r" -v s="$s" -v e="$e" -v n="$n" 'BEGIN { printf "| round %d, %d entries | %.0f |\n", r, n, n / (e - s) }'
  done
  echo
  echo "$(journalctl --version | head -n1)"
else
  echo
  echo "(install systemd-journal-remote for journalctl's own rate)"
fi
