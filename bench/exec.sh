#!/usr/bin/env bash
# bench/exec.sh — the execution layer's speed beside a plain append, one table per build.
#
# For each build directory given (default: this checkout's target/release, built first), it
# starts `cairn-bank local` (master, 3 chunkservers, 3 replicas with their workers, front door,
# all RF 3 with fsync before every ack) and measures on that one cluster, back to back:
#   voted     `cairn-bank bench --front-door` at C=32 and C=1 (mixed bank calls);
#   direct    the same calls against `cairn-bank serve-direct` (plain tonic, in memory);
#   append    `cairn bench` 1 KiB records at C=32 and C=1 on a fresh log of the same cluster;
# and the CPU the `local` process tree used during the voted C=32 run. The voted runs follow
# WARMUP voted calls on the new service, not measured: a new service's first calls wait up to
# 200 ms each time a tail finds a log's first chunk (a tail of a log with no chunk polls the
# master), a start-up cost that otherwise weighs on a 2-second run. Then the ratios the
# execution layer's goals name: voted C=32 calls/s ÷ append C=32 records/s (goal ≥ 0.25) and
# voted C=1 p50 ÷ append C=1 p50 (goal ≤ 3).
#
# Usage: bench/exec.sh [BUILD_DIR…]   (each holds `cairn` and `cairn-bank`)
# Env: PORT (default 7700: master; chunkservers on the next 3, front door on PORT+10, the direct
#      server on PORT+20), WARMUP (1000), CALLS32 (10000), CALLS1 (1000), RECORDS32 (30000),
#      RECORDS1 (3000),
#      RUNS (1: how many times each build is measured, builds alternating), OUT (default
#      /tmp/cairn-bench-exec, wiped).
# Every process started here binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PORT:-7700}"
WARMUP="${WARMUP:-1000}"
CALLS32="${CALLS32:-10000}"
CALLS1="${CALLS1:-1000}"
RECORDS32="${RECORDS32:-30000}"
RECORDS1="${RECORDS1:-3000}"
RUNS="${RUNS:-1}"
OUT="${OUT:-/tmp/cairn-bench-exec}"
MASTER="127.0.0.1:$PORT"
DOOR="127.0.0.1:$((PORT + 10))"
DIRECT="127.0.0.1:$((PORT + 20))"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

BUILDS=("$@")
if [ ${#BUILDS[@]} -eq 0 ]; then
  log "building cairn and cairn-bank (release)"
  (cd "$ROOT" && cargo build --release -q -p cairn-cli -p cairn-bank)
  BUILDS=("$ROOT/target/release")
fi

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

# Waits (at most 60 s) for LINE to appear in FILE while PID lives.
wait_for_line() {
  local file=$1 line=$2 pid=$3
  for _ in $(seq 300); do
    grep -q "$line" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { log "process $pid died"; return 1; }
    sleep 0.2
  done
  log "timed out waiting for '$line' in $file"
  return 1
}

# CPU seconds (user + system) used so far by PID and its children (running and reaped).
cpu_secs() {
  local pid=$1 total=0 ticks
  ticks=$(getconf CLK_TCK)
  for p in $pid $(pgrep -P "$pid" || true); do
    # utime stime cutime cstime: fields 14-17 of /proc/PID/stat (after the command's parens).
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13 + $14 + $15}')))
  done
  awk -v t="$total" -v h="$ticks" 'BEGIN { printf "%.2f", t / h }'
}

field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

rm -rf "$OUT"; mkdir -p "$OUT"
printf '%s\n' "| build | run | voted C=32 calls/s | p50/p99 µs | voted C=1 calls/s | p50/p99 µs | direct C=32 calls/s | direct C=1 p50 µs | append C=32 rec/s | append C=1 rec/s | p50 µs | C=32 ratio (≥0.25) | C=1 p50 ratio (≤3) | CPU s / 1k voted calls |" >"$OUT/table.md"
printf '%s\n' "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" >>"$OUT/table.md"

for run in $(seq "$RUNS"); do
  for build in "${BUILDS[@]}"; do
    tag="$(basename "$(dirname "$build")")-$(basename "$build")-$run"
    dir="$OUT/$tag"
    mkdir -p "$dir"
    log "[$tag] starting cairn-bank local on $MASTER"
    "$build/cairn-bank" local --data "$dir/data" --port "$PORT" >"$dir/local.out" 2>"$dir/local.log" &
    local_pid=$!
    PIDS+=("$local_pid")
    wait_for_line "$dir/local.out" "front door" "$local_pid"
    if [ "$WARMUP" -gt 0 ]; then
      "$build/cairn-bank" bench --front-door "$DOOR" --calls "$WARMUP" --concurrency 32 --json >/dev/null
    fi
    before=$(cpu_secs "$local_pid")
    v32=$("$build/cairn-bank" bench --front-door "$DOOR" --calls "$CALLS32" --concurrency 32 --json)
    after=$(cpu_secs "$local_pid")
    v1=$("$build/cairn-bank" bench --front-door "$DOOR" --calls "$CALLS1" --concurrency 1 --json)
    a32=$("$build/cairn" bench --master "$MASTER" --log "/bench32" --records "$RECORDS32" \
      --size 1024 --concurrency 32 --no-replay --json)
    a1=$("$build/cairn" bench --master "$MASTER" --log "/bench1" --records "$RECORDS1" \
      --size 1024 --concurrency 1 --no-replay --json)
    stop_all
    "$build/cairn-bank" serve-direct --listen "$DIRECT" >"$dir/direct.out" 2>"$dir/direct.log" &
    direct_pid=$!
    PIDS+=("$direct_pid")
    wait_for_line "$dir/direct.out" "listening" "$direct_pid"
    d32=$("$build/cairn-bank" bench --direct "$DIRECT" --calls "$CALLS32" --concurrency 32 --json)
    d1=$("$build/cairn-bank" bench --direct "$DIRECT" --calls "$CALLS1" --concurrency 1 --json)
    stop_all
    for j in "$v32" "$v1" "$d32" "$d1"; do
      [ "$(field errors <<<"$j")" = 0 ] || { log "[$tag] calls failed: $j"; exit 1; }
    done
    printf '%s\n' "$v32" "$v1" "$d32" "$d1" "$a32" "$a1" >"$dir/results.jsonl"
    python3 - "$tag" "$v32" "$v1" "$d32" "$d1" "$a32" "$a1" "$before" "$after" "$CALLS32" \
      >>"$OUT/table.md" <<'EOF'
import json, sys
tag, v32, v1, d32, d1, a32, a1 = sys.argv[1], *map(json.loads, sys.argv[2:8])
cpu = float(sys.argv[9]) - float(sys.argv[8])
calls = int(sys.argv[10])
build, run = tag.rsplit("-", 1)
print(f"| {build} | {run} | {v32['calls_per_sec']:,.0f} | {v32['p50_us']:,}/{v32['p99_us']:,} "
      f"| {v1['calls_per_sec']:,.0f} | {v1['p50_us']:,}/{v1['p99_us']:,} "
      f"| {d32['calls_per_sec']:,.0f} | {d1['p50_us']:,} "
      f"| {a32['records_per_sec']:,.0f} | {a1['records_per_sec']:,.0f} | {a1['p50_us']:,} "
      f"| {v32['calls_per_sec'] / a32['records_per_sec']:.2f} | {v1['p50_us'] / a1['p50_us']:.2f} "
      f"| {cpu / calls * 1000:.2f} |")
EOF
    log "[$tag] done: $(tail -1 "$OUT/table.md")"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/table.md"
cat "$OUT/table.md"
