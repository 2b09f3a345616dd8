#!/bin/bash
# A change's cost by profile count, side by side in one run:
#
#   benches/scaling.sh        (BENCH_SIZES="1000 3000 10000 30000", BENCH_CHANGES=100)
#
# For each size, benches/daemon.rs with the no-op parser and debounce 0:
# p50/p99 of armord's own time from the write to the load call, and to the
# first parser call (30,000 runs with max_profiles raised to fit).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${BENCH_SIZES:-"1000 3000 10000 30000"}
changes=${BENCH_CHANGES:-100}
cargo bench --bench daemon --no-run -q 2>/dev/null
echo "| profiles | armord's own, write → load call | write → first parser call |"
echo "|---|---|---|"
for n in $sizes; do
  out=$(BENCH_FLOOR_ROUNDS=0 BENCH_IDLE_SECS=0 BENCH_RECORDS=0 BENCH_DEBOUNCES=0 BENCH_CHANGES="$changes" \
        BENCH_PROFILES="$n" cargo bench --bench daemon 2>/dev/null)
  own=$(grep "armord's own" <<<"$out" | sed -E 's/.*\| (p50 [^|]*) \|$/\1/')
  first=$(grep "first parser call" <<<"$out" | sed -E 's/.*\| (p50 [^|]*) \|$/\1/')
  echo "| $n | $own | $first |"
done
echo
echo "$(nproc) CPUs; $changes changes each; no-op parser, debounce 0"
