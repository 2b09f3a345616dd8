#!/usr/bin/env bash
# Audit parser throughput, armord against libapparmor's Python binding, on
# the same 100,000 mixed lines, each pinned to one core, in one run.
# Usage: benches/audit_vs_libapparmor.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
if ! /usr/bin/python3 -c 'import LibAppArmor' 2>/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq python3-libapparmor >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo bench --bench audit --no-run -q 2>/dev/null
bin=$(ls -t target/release/deps/audit-* | grep -v '\.d$' | head -n1)
"$bin" --generate "$work/lines.log" "$n"
ours=$(taskset -c 0 "$bin" "$work/lines.log")
theirs=$(taskset -c 0 /usr/bin/python3 - "$work/lines.log" <<'PY'
import sys, time, LibAppArmor
lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
best = float("inf")
ok = 0
for _ in range(3):
    t = time.perf_counter()
    ok = 0
    for l in lines:
        r = LibAppArmor.parse_record(l)
        if r.event != LibAppArmor.AA_RECORD_INVALID:
            ok += 1
        LibAppArmor.free_record(r)
    best = min(best, time.perf_counter() - t)
print(f"libapparmor {len(lines)/best:.0f} records/s ({len(lines)} lines, {ok} AppArmor records)")
PY
)
a=$(echo "$ours" | awk '{print $2}')
b=$(echo "$theirs" | awk '{print $2}')
echo "| parser (one core, $n mixed lines) | records/s |"
echo "|---|---|"
echo "| armord audit::parse | $a |"
echo "| libapparmor parse_record (Python binding) | $b |"
echo "| ratio | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1fx", a / b }') |"
echo
echo "$ours"
echo "$theirs"
