#!/usr/bin/env bash
# scripts/simulate.sh — sweep the cluster simulator over many seeds and print seeds per second
# and every failing seed. Every seed runs in a fresh `simulate SEED` process, as a replay does.
#
# Usage: scripts/simulate.sh [--seeds N] [--from S] [--jobs J] [--log FILE]
#   --seeds N  seeds to run (default 1000), from S (default 1)
#   --jobs J   seeds run at once (default: the number of cores)
#   --log FILE every seed's report line (default: a temporary file, deleted at the end)
# Builds `simulate` once with the `sim` profile: optimised (about twice the seeds per second of
# the debug build) with every debug assertion and overflow check of the code under test kept.
# Replay a failing seed with the same build:
#   cargo run --profile sim -p cairn-sim --bin simulate -- SEED
# (the debug build, `cargo run -p cairn-sim --bin simulate -- SEED`, gives the same history).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEEDS=1000
FROM=1
JOBS="$(nproc)"
LOG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS="$2"; shift 2 ;;
    --from) FROM="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --log) LOG="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
cargo build -q --profile sim -p cairn-sim --bin simulate
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# A copy, so that rebuilding the workspace during a long sweep does not change what runs.
cp target/sim/simulate "$OUT/simulate"
[ -n "$LOG" ] || LOG="$OUT/seeds.log"
: >"$LOG"

# One seed: its report's first line, marked FAILED when the process failed (a run that
# acknowledged nothing fails with a clean report), or a line saying it printed no report.
run_seed() {
  local seed="$1" report status=0 line
  report="$("$OUT/simulate" "$seed" 2>/dev/null)" || status=$?
  line="${report%%$'\n'*}"
  case "$line" in
    "seed $seed: "*) ;;
    *) line="seed $seed: no report: ${line:-nothing printed}" ;;
  esac
  [ "$status" -eq 0 ] || line="$line FAILED (exit $status)"
  echo "$line"
}
export -f run_seed
export OUT

start=$(date +%s.%N)
last=$(( FROM + SEEDS - 1 ))
seq "$FROM" "$last" | xargs -P "$JOBS" -I{} bash -c 'run_seed {}' >>"$LOG" &
sweep=$!
# Progress every 30 s on stderr: seeds done, rate, failures so far.
ticks=0
while kill -0 "$sweep" 2>/dev/null; do
  sleep 1
  ticks=$(( ticks + 1 ))
  [ $(( ticks % 30 )) -eq 0 ] && kill -0 "$sweep" 2>/dev/null || continue
  done_n=$(wc -l <"$LOG")
  bad_n=$(grep -vc 'problems \[\], error None$' "$LOG" || true)
  awk -v s="$start" -v e="$(date +%s.%N)" -v n="$done_n" -v t="$SEEDS" -v b="$bad_n" \
    'BEGIN { printf "%d/%d seeds, %.2f seeds/s, %d failing\n", n, t, n / (e - s), b }' >&2
done
wait "$sweep" || true

ran=$(wc -l <"$LOG")
awk -v s="$start" -v e="$(date +%s.%N)" -v n="$ran" -v j="$JOBS" \
  'BEGIN { t = e - s; printf "ran %d seeds in %.1f s: %.2f seeds/s with %d jobs\n", n, t, n / t, j }'
bad=$(grep -v 'problems \[\], error None$' "$LOG" | sort -t' ' -k2n || true)
if [ -n "$bad" ] || [ "$ran" -ne "$SEEDS" ]; then
  [ "$ran" -eq "$SEEDS" ] || echo "only $ran of $SEEDS seeds reported"
  echo "failing seeds (replay: cargo run --profile sim -p cairn-sim --bin simulate -- SEED):"
  echo "$bad" | sed 's/^/  /'
  exit 1
fi
echo "no failing seed"
