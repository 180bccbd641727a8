#!/usr/bin/env bash
# scripts/simulate.sh — sweep the cluster simulator over many seeds and print seeds per second
# and every failing seed. Every seed runs in a fresh process, as a replay does (replay one with
# `cargo run -p cairn-sim --bin simulate -- N`).
#
# Usage: scripts/simulate.sh [--seeds N] [--from S] [--jobs J]
#   --seeds N  seeds to run (default 1000), from S (default 1)
#   --jobs J   parallel test processes (default: the number of cores), each a slice of the range
# Builds the simulator's test binary once (the debug build: it keeps every assertion of the code
# under test).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEEDS=1000
FROM=1
JOBS="$(nproc)"
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS="$2"; shift 2 ;;
    --from) FROM="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
cargo test -q -p cairn-sim --test simulation --no-run 2>/dev/null
BIN="$(cargo test -q -p cairn-sim --test simulation --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[ -x "$BIN" ] || { echo "no simulator test binary" >&2; exit 1; }

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# A copy, so that rebuilding the workspace during a long sweep does not change what runs.
cp "$BIN" "$OUT/simulation"
BIN="$OUT/simulation"
start=$(date +%s.%N)
per=$(( (SEEDS + JOBS - 1) / JOBS ))
pids=()
for j in $(seq 0 $((JOBS - 1))); do
  a=$(( FROM + j * per ))
  b=$(( a + per ))
  end=$(( FROM + SEEDS ))
  [ "$a" -ge "$end" ] && break
  [ "$b" -gt "$end" ] && b=$end
  CAIRN_SIM_SEEDS="$a..$b" "$BIN" seeded_fault_schedules_lose_nothing --nocapture \
    >"$OUT/job$j.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
ran=$(cat "$OUT"/job*.log | grep '^seed [0-9]*: acked' | sed 's/:.*//' | sort -u | wc -l)
awk -v s="$start" -v e="$(date +%s.%N)" -v n="$ran" -v j="$JOBS" \
  'BEGIN { t = e - s; printf "ran %d seeds in %.1f s: %.1f seeds/s with %d jobs\n", n, t, n / t, j }'
bad=$(cat "$OUT"/job*.log | grep '^seed [0-9]*: acked' \
  | grep -v 'problems \[\], error None' | sort -u || true)
if [ -n "$bad" ] || [ "$status" -ne 0 ]; then
  echo "failing seeds:"
  echo "$bad" | sed 's/^/  /'
  exit 1
fi
echo "no failing seed"
