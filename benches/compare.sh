#!/bin/bash
# armord against the alternatives, side by side in one run, as one table.
#
#   benches/compare.sh            (about 20 minutes: the steady state runs 10)
#
# BENCH_IDLE_SECS (600), BENCH_ROUNDS (3) and the sizes of benches/daemon.rs
# shorten it. Installs what it needs from Debian when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# Scaling mode: only the bulk sync, pinned with taskset to each CPU count,
# one table (N, serial, single, armord, both ratios):
#   benches/compare.sh --cpus "2 4 8 16"
# For a machine without network or Debian's packages (see BENCHMARKS.md):
#   BENCH_BUNDLE=dir   apparmor_parser and its /etc/apparmor.d from the
#                      apparmor .deb (`dpkg -x`), under dir/root
#   BENCH_PROFILES=dir the profile files to sync
#   BENCH_ARMORD=path  a built armord (no cargo build)
cpus=""
if [ "${1:-}" = "--cpus" ]; then cpus="${2:?--cpus needs a list, e.g. \"2 4 8 16\"}"; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${BENCH_BUNDLE:-}" ]; then
  bundle=$(cd "$BENCH_BUNDLE" && pwd)
  features="$bundle/root/usr/share/apparmor-features/features"
  # The bundle's parser with the bundle's includes, for armord and the
  # comparisons alike.
  printf '#!/bin/sh\nexec %s --base %s "$@"\n' "$bundle/root/sbin/apparmor_parser" "$bundle/root/etc/apparmor.d" > "$work/apparmor_parser"
  chmod +x "$work/apparmor_parser"
  parser_bin="$work/apparmor_parser"
else
  pkgs=()
  for p in apparmor apparmor-profiles apparmor-profiles-extra python3-libapparmor strace; do
    dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
  done
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  features=$(sed -n 's/^[[:space:]]*policy-features[[:space:]]*=*[[:space:]]*//p' /etc/apparmor/parser.conf 2>/dev/null | head -n1)
  [ -n "$features" ] && [ -e "$features" ] || features=/usr/share/apparmor-features/features
  parser_bin=apparmor_parser
fi
if [ -n "${BENCH_ARMORD:-}" ]; then
  armord=$(cd "$(dirname "$BENCH_ARMORD")" && pwd)/$(basename "$BENCH_ARMORD")
else
  cargo build --release --locked -q
  armord=$PWD/target/release/armord
fi
rounds=${BENCH_ROUNDS:-3}
idle_min=$(awk -v s="${BENCH_IDLE_SECS:-600}" 'BEGIN { printf "%g", s / 60 }')
records=${BENCH_RECORDS:-100000}
parser() { "$parser_bin" -M "$features" "$@"; }
printf '[parser]\npath = "%s"\nfeatures_file = "%s"\n[denials]\nenabled = false\n' "$parser_bin" "$features" > "$work/armord.toml"

# The profiles of Debian's apparmor-profiles and apparmor-profiles-extra.
mkdir -p "$work/src"
if [ -n "${BENCH_PROFILES:-}" ]; then
  cp "$BENCH_PROFILES"/* "$work/src/"
else
  dpkg -L apparmor-profiles apparmor-profiles-extra |
    grep -E '^(/etc/apparmor.d|/usr/share/apparmor/extra-profiles)/[^/]+$' |
    while read -r f; do
      [ -f "$f" ] && [ "$(basename "$f")" != README ] && cp "$f" "$work/src/"
    done
fi
nprof=$(ls "$work/src" | wc -l)

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# timed FILE CMD...: run CMD (output dropped, failures allowed), append its seconds to FILE.
timed() {
  local out=$1 t
  shift
  t=$(now)
  "$@" >/dev/null 2>&1 || true
  awk -v a="$(now)" -v b="$t" 'BEGIN { printf "%.3f\n", a - b }' >> "$out"
}
serial_parser() { for f in "$work"/src/*; do parser -Q --write-cache --cache-loc "$work/c" "$f" || true; done; }
single_parser() { parser -Q --write-cache --cache-loc "$work/c" "$work"/src/*; }
armord_once() { "$armord" --once --simulate --bus none --config "$work/armord.toml" --source "$work/src" --state-dir "$work/st"; }

if [ -n "$cpus" ]; then
  echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r); $("$parser_bin" --version | head -n1); $nprof profile files; median of $rounds rounds, cold cache each."
  echo
  echo "| CPUs | serial per file | one parser run | armord --once | armord / one run | serial / armord |"
  echo "|---|---|---|---|---|---|"
  for n in $cpus; do
    set=$(seq -s, 0 $(( n - 1 )))
    rm -f "$work/serial" "$work/single" "$work/armord"
    for _ in $(seq "$rounds"); do
      rm -rf "$work/c" && timed "$work/serial" taskset -c "$set" bash -c "$(declare -f parser serial_parser); parser_bin='$parser_bin' features='$features' work='$work' serial_parser"
      rm -rf "$work/c" && timed "$work/single" taskset -c "$set" bash -c "$(declare -f parser single_parser); parser_bin='$parser_bin' features='$features' work='$work' single_parser"
      rm -rf "$work/st" && timed "$work/armord" taskset -c "$set" "$armord" --once --simulate --bus none --config "$work/armord.toml" --source "$work/src" --state-dir "$work/st"
    done
    se=$(median < "$work/serial"); si=$(median < "$work/single"); ar=$(median < "$work/armord")
    echo "| $n | $se s | $si s | $ar s | $(ratio "$ar" "$si")× | $(ratio "$se" "$ar")× |"
  done
  exit 0
fi

# 1. Bulk initial sync, cold cache each time, the three ways in turn.
for _ in $(seq "$rounds"); do
  rm -rf "$work/c" && timed "$work/serial" serial_parser
  rm -rf "$work/c" && timed "$work/single" single_parser
  rm -rf "$work/st" && timed "$work/armord" armord_once
done
serial=$(median < "$work/serial"); single=$(median < "$work/single"); bulk=$(median < "$work/armord")
loaded=$(wc -l < "$work/st/simulate/profiles")

# 2. Restart after a reboot (the kernel holds nothing): warm state and
#    parser cache against none. And a plain restart (the kernel holds all).
for _ in $(seq "$rounds"); do
  rm -f "$work/st/simulate/profiles" && timed "$work/warm" armord_once
  timed "$work/plain" armord_once
  rm -rf "$work/st" && timed "$work/cold" armord_once
done
warm=$(median < "$work/warm"); cold=$(median < "$work/cold"); plain=$(median < "$work/plain")

# 3, 4, 6: the daemon (no-op parser, 1000 profiles).
cargo bench --locked -q --bench daemon 2>/dev/null > "$work/daemon"
# 5: audit parsing against libapparmor.
benches/audit_vs_libapparmor.sh 2>/dev/null > "$work/audit"

# row FILE PATTERN [PATTERN]: the value column of the first row with both.
# A figure of the daemon's table; empty when that part was not run
# (BENCH_IDLE_SECS=0, BENCH_RECORDS=0).
row() { { grep -F "$2" "$1" || true; } | grep -F "${3:-$2}" | head -n1 | awk -F'|' '{ gsub(/^ +| +$/, "", $3); print $3 }' || true; }
lat0=$(row "$work/daemon" "load call (a write" "debounce 0 ms")
first0=$(row "$work/daemon" "first parser call" "debounce 0 ms")
lat200=$(row "$work/daemon" "load call (a write" "debounce 200 ms")
own0=$(row "$work/daemon" "armord's own" "debounce 0 ms")
floor=$(row "$work/daemon" "process floor")
calls=$(row "$work/daemon" "steady" "parser calls")
opens=$(row "$work/daemon" "profile files opened")
reads=$(row "$work/daemon" "read syscalls")
wakeups=$(row "$work/daemon" "context switches")
rss=$(row "$work/daemon" "idle RSS")
replay=$(row "$work/daemon" "RSS while")
ours=$(row "$work/audit" "armord audit::parse")
theirs=$(row "$work/audit" "libapparmor")

echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r); $(apparmor_parser --version | head -n1)."
echo "Bulk and restart times are the median of $rounds rounds; $nprof profile files, $loaded profiles loaded."
echo
echo "| # | figure | armord | comparison | target |"
echo "|---|---|---|---|---|"
echo "| 1 | bulk initial sync, cold cache | ${bulk} s | serial \`apparmor_parser\` per file ${serial} s ($(ratio "$serial" "$bulk")× armord); one \`apparmor_parser\` over all ${single} s (armord $(ratio "$bulk" "$single")× of it) | ≥ 3× serial, ≤ 1.2× single |"
echo "| 2 | restart after reboot, warm state and cache | ${warm} s | cold (no state, no cache) ${cold} s: $(ratio "$cold" "$warm")×; restart with the kernel holding everything ${plain} s | ≥ 5× |"
echo "| 3 | steady state, ${idle_min} min, 1000 profiles | parser calls ${calls}; profile files opened ${opens}; read syscalls, bytes ${reads}; wakeups ${wakeups} | a 30 s poller: 20 runs that read all 1000 files | 0, 0, timers only (the 300 s resync reads securityfs and /proc, no profile file) |"
echo "| 4 | change → load call, 1000 profiles, no-op parser | armord's own time (debounce 0, less the time inside the parser calls): ${own0}; wall time to the load call ${lat0}; to the first parser call ${first0}; with the default 200 ms debounce ${lat200}; the parser processes alone, no armord (its floor) ${floor} | a 30 s poller: 15 s on average, 30 s at worst | p99 ≤ 5 ms |"
echo "| 5 | audit parsing, one core, 100,000 mixed lines | ${ours} records/s | libapparmor (Python binding) ${theirs} records/s: $(ratio "$ours" "$theirs")× | ≥ 1,000,000/s, ≥ 5× |"
echo "| 6 | memory | idle RSS ${rss}; RSS per quarter of ${records} replayed denials ${replay} | | ≤ 15 MiB, flat |"
echo
echo "Daemon details (\`cargo bench --bench daemon\`):"
echo
cat "$work/daemon"
