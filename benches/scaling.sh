#!/bin/bash
# A change's cost by profile count, side by side in one run:
#
#   benches/scaling.sh        (BENCH_SIZES="1000 3000 10000 30000", BENCH_CHANGES=100)
#
# For each size, benches/daemon.rs with the no-op parser and debounce 0:
# p50/p99 of armord's own time from the write to the load call, and to the
# first parser call (30,000 runs with max_profiles raised to fit); then,
# after 12 s at rest, the resident memory, and a boot restore: armord
# stopped, the fake kernel emptied, armord started again on its state
# directory and compile cache, start → READY.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${BENCH_SIZES:-"1000 3000 10000 30000"}
changes=${BENCH_CHANGES:-100}
cargo bench --bench daemon --no-run -q 2>/dev/null
echo "| profiles | armord's own, write → load call | write → first parser call | idle RSS | boot restore, start → READY |"
echo "|---|---|---|---|---|"
for n in $sizes; do
  out=$(BENCH_FLOOR_ROUNDS=0 BENCH_IDLE_SECS=0 BENCH_RECORDS=0 BENCH_DEBOUNCES=0 BENCH_CHANGES="$changes" \
        BENCH_RESTART=1 BENCH_PROFILES="$n" cargo bench --bench daemon 2>/dev/null)
  own=$(grep "armord's own" <<<"$out" | sed -E 's/.*\| (p50 [^|]*) \|$/\1/')
  first=$(grep "first parser call" <<<"$out" | sed -E 's/.*\| (p50 [^|]*) \|$/\1/')
  rss=$(grep "idle RSS" <<<"$out" | sed -E 's/.*\| ([^|]*) \|$/\1/')
  restore=$(grep "boot restore" <<<"$out" | sed -E 's/.*\| ([^|]*) \|$/\1/')
  echo "| $n | $own | $first | $rss | $restore |"
done
echo
echo "$(nproc) CPUs; $changes changes each; no-op parser, debounce 0"
