#!/usr/bin/env bash
# bench/many_replicas.sh — one chunkserver holding 100,000+ replicas: its descriptors, threads
# and memory stay bounded by its limits (chunkserver/src/limits.rs), not by its replica count.
#
# Starts a master and one chunkserver (release build, RF 1), creates LOGS logs with the smallest
# chunk size (4 KiB) and appends to them in parallel (`cairn bench`, records of 1000 bytes, 3 to
# a chunk) until the chunkserver holds TARGET replicas; then appends once more and replays a
# whole log through it. Prints, at 0, 10k, 50k and 100k replicas and after the final append and
# replay: the chunkserver's open descriptors (ls /proc/PID/fd | wc -l), threads (Threads in
# /proc/PID/status) and memory (VmRSS, VmHWM).
#
# Usage: bench/many_replicas.sh
# Env: OUT (default /tmp/cairn-many-replicas, wiped), TARGET (default 100000), LOGS (default 8),
#      CAIRN_PORT (default 7450: master; the chunkserver on the next port), CAIRN (a cairn binary
#      to use instead of building the release one).
# Every process started here binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/cairn-many-replicas}"
TARGET="${TARGET:-100000}"
LOGS="${LOGS:-8}"
PORT="${CAIRN_PORT:-7450}"
MASTER="127.0.0.1:$PORT"
CS="127.0.0.1:$((PORT + 1))"
CHUNK=4096
SIZE=1000
# Records per log: three fit a 4 KiB chunk; 20% more than the target needs, the appenders are
# stopped once it is reached.
PER_LOG=$(( TARGET * 3 * 12 / 10 / LOGS ))

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

rm -rf "$OUT"; mkdir -p "$OUT"
if [ -z "${CAIRN:-}" ]; then
  log "building cairn (release)"
  (cd "$ROOT" && cargo build --release -q -p cairn-cli)
  CAIRN="$ROOT/target/release/cairn"
fi

PIDS=()
BENCH=()
stop_all() {
  for pid in "${BENCH[@]}" "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BENCH[@]}" "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=(); BENCH=()
}
trap stop_all EXIT

log "starting master $MASTER and chunkserver $CS (ulimit -n $(ulimit -n))"
"$CAIRN" master --listen "$MASTER" --data "$OUT/master" --default-replication 1 \
  --min-free-bytes 0 2>"$OUT/master.log" &
PIDS+=($!)
"$CAIRN" chunkserver --listen "$CS" --master "$MASTER" --data "$OUT/cs" \
  2>"$OUT/cs.log" &
CS_PID=$!
PIDS+=("$CS_PID")
for _ in $(seq 100); do
  "$CAIRN" ls --master "$MASTER" >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 2

replicas() { find "$OUT/cs/chunks" -maxdepth 1 -name '*.chunk' | wc -l; }
ROWS="$OUT/rows.txt"; : >"$ROWS"
sample() {
  local fds threads rss hwm
  fds=$(ls "/proc/$CS_PID/fd" | wc -l)
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$CS_PID/status")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$CS_PID/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$CS_PID/status")
  printf '%-26s %9s %6s %8s %10s %10s\n' "$1" "$2" "$fds" "$threads" "$((rss / 1024)) MiB" \
    "$((hwm / 1024)) MiB" | tee -a "$ROWS" >&2
}
kill -0 "$CS_PID"
sample "start" "$(replicas)"

log "appending to $LOGS logs of $CHUNK-byte chunks until the chunkserver holds $TARGET replicas"
start=$(date +%s)
for i in $(seq "$LOGS"); do
  "$CAIRN" bench --master "$MASTER" --log "/many/$i" --chunk-size "$CHUNK" --replication 1 \
    --records "$PER_LOG" --size "$SIZE" --concurrency 4 --no-replay --json \
    >"$OUT/fill$i.json" 2>"$OUT/fill$i.err" &
  BENCH+=($!)
done
next=(10000 50000 "$TARGET")
[ "$TARGET" -le 50000 ] && next=("$TARGET")
while [ "${#next[@]}" -gt 0 ]; do
  sleep 5
  kill -0 "$CS_PID" || { log "chunkserver died"; tail -20 "$OUT/cs.log" >&2; exit 1; }
  n=$(replicas)
  log "$n replicas ($(( $(date +%s) - start )) s)"
  while [ "${#next[@]}" -gt 0 ] && [ "$n" -ge "${next[0]}" ]; do
    sample "filled to ${next[0]}" "$n"
    next=("${next[@]:1}")
  done
  alive=0
  for pid in "${BENCH[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  if [ "$alive" = 0 ] && [ "${#next[@]}" -gt 0 ]; then
    log "the appenders ended before $TARGET replicas"; tail -5 "$OUT"/fill*.err >&2; exit 1
  fi
done
for pid in "${BENCH[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${BENCH[@]}"; do wait "$pid" 2>/dev/null || true; done
BENCH=()
sleep 3

log "appending 3,000 more records to /many/1 and replaying it whole"
"$CAIRN" bench --master "$MASTER" --log /many/1 --records 3000 --size "$SIZE" --concurrency 4 \
  --no-replay --json >"$OUT/after.json"
sample "after 3,000 more appends" "$(replicas)"
t0=$(date +%s.%N)
records=$("$CAIRN" replay /many/1 --json --master "$MASTER" | grep -c '"type":"record"')
t1=$(date +%s.%N)
sample "after replaying /many/1" "$(replicas)"
log "replay of /many/1: $records records in $(python3 -c "print(round($t1 - $t0, 1))") s"
kill -0 "$CS_PID"
log "errors in the chunkserver's log: $(grep -c ' ERROR ' "$OUT/cs.log" || true)"

echo
echo "== one chunkserver, RF 1, $CHUNK-byte chunks, $LOGS logs; ulimit -n $(ulimit -n)"
printf '%-26s %9s %6s %8s %10s %10s\n' "point" "replicas" "fds" "threads" "VmRSS" "VmHWM"
cat "$ROWS"
echo "replay of /many/1 after the fill: $records records"
