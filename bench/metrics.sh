#!/usr/bin/env bash
# bench/metrics.sh — `cairn bench` with every role serving its metrics, a scrape of each role's
# /metrics taken during the run, and (given two builds) the cost of the metrics.
#
# For each `cairn` binary given (default: this checkout's release build, built first), RUNS
# times, builds alternating: starts a master and 3 chunkservers as separate processes on
# 127.0.0.1 (RF 3, fsync before every ack), each with `--http` when the binary has the flag,
# runs `cairn bench` (SIZE-byte records, C in flight, RECORDS records, no replay) on a new log,
# and 1 s into the run scrapes /metrics from the master and every chunkserver into OUT. Prints
# one table row per run (records/s, p50/p99) and, from the scrapes, the lines an operator looks
# at first.
#
# Usage: bench/metrics.sh [CAIRN_BINARY…]
# Env: SIZE (1024), C (32), RECORDS (60000), RUNS (1), PORT (7500: the master; chunkservers on
#      the next three; HTTP on PORT+50…), OUT (/tmp/cairn-bench-metrics, wiped).
# Every process started here binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE="${SIZE:-1024}"
C="${C:-32}"
RECORDS="${RECORDS:-60000}"
RUNS="${RUNS:-1}"
PORT="${PORT:-7500}"
OUT="${OUT:-/tmp/cairn-bench-metrics}"
MASTER="127.0.0.1:$PORT"

BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  (cd "$ROOT" && cargo build --release -q -p cairn-cli)
  BINS=("$ROOT/target/release/cairn")
fi

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

rm -rf "$OUT"; mkdir -p "$OUT"
echo "| binary | run | metrics served | records/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|---|"
for run in $(seq "$RUNS"); do
  for i in "${!BINS[@]}"; do
    bin="${BINS[$i]}"
    dir="$OUT/b$i-r$run"
    mkdir -p "$dir"
    http=()
    "$bin" master --help | grep -q -- '--http' && http=(yes)
    mhttp=(); [ ${#http[@]} -gt 0 ] && mhttp=(--http "127.0.0.1:$((PORT + 50))")
    "$bin" master --listen "$MASTER" --data "$dir/master" "${mhttp[@]}" 2>"$dir/master.log" &
    PIDS+=($!)
    for cs in 1 2 3; do
      chttp=(); [ ${#http[@]} -gt 0 ] && chttp=(--http "127.0.0.1:$((PORT + 50 + cs))")
      "$bin" chunkserver --listen "127.0.0.1:$((PORT + cs))" --master "$MASTER" \
        --data "$dir/cs$cs" "${chttp[@]}" 2>"$dir/cs$cs.log" &
      PIDS+=($!)
    done
    for _ in $(seq 100); do
      "$bin" create /bench --master "$MASTER" >/dev/null 2>&1 && break
      sleep 0.3
    done
    if [ ${#http[@]} -gt 0 ]; then
      ( sleep 1
        curl -s "http://127.0.0.1:$((PORT + 50))/metrics" >"$dir/master.metrics"
        for cs in 1 2 3; do
          curl -s "http://127.0.0.1:$((PORT + 50 + cs))/metrics" >"$dir/cs$cs.metrics"
        done ) &
      scraper=$!
    fi
    result=$("$bin" bench --master "$MASTER" --log /bench --records "$RECORDS" --size "$SIZE" \
      --concurrency "$C" --no-replay --json)
    [ ${#http[@]} -gt 0 ] && wait "$scraper"
    stop_all
    # The data goes; the logs and scrapes stay.
    rm -rf "$dir/master" "$dir"/cs?
    printf '| %s | %s | %s | %.0f | %s | %s |\n' "$bin" "$run" "${http[0]:-no}" \
      "$(field records_per_sec <<<"$result")" "$(field p50_us <<<"$result")" \
      "$(field p99_us <<<"$result")"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in "$OUT"/*/master.metrics; do
  [ -f "$f" ] || continue
  d=$(dirname "$f")
  echo
  echo "== scrapes 1 s into the run ($d)"
  grep -E '^cairn_master_(chunks|chunkservers|seals_total|chunks_allocated_total|logs)' "$f" | sort
  for cs in 1 2 3; do
    grep -E '^cairn_chunkserver_(append_records_total|append_seconds_(sum|count)|group_commits_total|fsync_seconds_(sum|count)|append_batch_records_(sum|count)|replicas)' "$d/cs$cs.metrics" | sort
  done
  grep -hE '^cairn_rpc_responses_total' "$d"/*.metrics | grep -v 'Heartbeat' | sort
  break
done
