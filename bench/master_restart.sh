#!/usr/bin/env bash
# bench/master_restart.sh — how long a master takes to serve again with a large namespace.
#
# Writes a data directory of the file-based operation log holding CHUNKS sealed chunks (3
# replicas each) in LOGS logs (`checkpoint.json`, FORMAT.md "Master operation log, version 3"),
# then times, for one `cairn master` process each, from its spawn until `cairn ls` answers:
#   1. the first start (the old checkpoint moved into the Raft log and a snapshot written);
#   2. a restart after SIGTERM (the snapshot read back);
#   3. a restart after SIGKILL with TAIL more Raft entries after the snapshot (TAIL logs
#      created one by one, each its own proposal, replayed from the Raft log at start; one
#      chunkserver runs meanwhile, as a log is created only with enough of them).
# Prints one line per case and the sizes of the snapshot and the Raft log. The timed starts run
# with no chunkserver: a master serves its namespace before any registers.
#
# Usage: bench/master_restart.sh [CAIRN_BINARY]   (default: this checkout's release build)
# Env: CHUNKS (100000), LOGS (100), TAIL (1000), RUNS (3), PORT (7590), OUT
#      (/tmp/cairn-bench-restart, wiped and removed at the end).
# The master binds 127.0.0.1 only and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHUNKS="${CHUNKS:-100000}"
LOGS="${LOGS:-100}"
TAIL="${TAIL:-1000}"
RUNS="${RUNS:-3}"
PORT="${PORT:-7590}"
OUT="${OUT:-/tmp/cairn-bench-restart}"
MASTER="127.0.0.1:$PORT"
BIN="${1:-}"
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -q -p cairn-cli)
  BIN="$ROOT/target/release/cairn"
fi

PID=""
CS_PID=""
stop() {
  for p in "$PID" "$CS_PID"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  PID=""; CS_PID=""
}
cleanup() { stop; rm -rf "$OUT"; }
trap cleanup EXIT

# Starts the master on $OUT/master; sets MS to the milliseconds until `cairn ls` answers.
MS=0
start_timed() {
  local t0 t1
  t0=$(date +%s%N)
  "$BIN" master --listen "$MASTER" --data "$OUT/master" >>"$OUT/master.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 3000); do
    if "$BIN" ls --master "$MASTER" >/dev/null 2>&1; then
      t1=$(date +%s%N)
      MS=$(((t1 - t0) / 1000000))
      return
    fi
    if ! kill -0 "$PID" 2>/dev/null; then
      echo "the master exited; its log:" >&2
      tail -5 "$OUT/master.log" >&2
      exit 1
    fi
    sleep 0.01
  done
  echo "the master did not serve within 30 s" >&2
  exit 1
}

write_checkpoint() {
  python3 - "$OUT/master/checkpoint.json" "$CHUNKS" "$LOGS" <<'EOF'
import json, sys
path, chunks, logs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per_log = -(-chunks // logs)
log_paths = [f"/bench/l{i:05d}" for i in range(logs)]
out = {"format": 3, "sequence": chunks + logs, "logs": [], "chunks": []}
handle = 1
left = chunks
for p in log_paths:
    out["logs"].append({"path": p, "replication": 3, "min_replicas": 3, "chunk_bytes": 67108864,
                        "writer_marks": []})
    for index in range(min(per_log, left)):
        out["chunks"].append({"handle": f"{handle:016x}", "log": p, "index": index, "version": 2,
                              "state": "sealed", "length": 67100000, "primary": "",
                              "replicas": ["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]})
        handle += 1
    left -= min(per_log, left)
with open(path, "w") as f:
    json.dump(out, f)
EOF
}

printf '%-50s %8s %8s\n' "case" "chunks" "ms"
for run in $(seq 1 "$RUNS"); do
  rm -rf "$OUT"; mkdir -p "$OUT/master"
  write_checkpoint
  start_timed; printf '%-50s %8d %8d\n' "first start (old checkpoint moved into Raft)" "$CHUNKS" "$MS"
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  start_timed; printf '%-50s %8d %8d\n' "restart after SIGTERM (snapshot)" "$CHUNKS" "$MS"
  "$BIN" chunkserver --listen "127.0.0.1:$((PORT + 1))" --master "$MASTER" \
    --data "$OUT/cs" --heartbeat-ms 100 >>"$OUT/cs.log" 2>&1 &
  CS_PID=$!
  for _ in $(seq 1 100); do
    "$BIN" create /tail/probe --master "$MASTER" --replication 1 >/dev/null 2>&1 && break
    sleep 0.1
  done
  for i in $(seq 1 "$TAIL"); do
    "$BIN" create "/tail/t$i" --master "$MASTER" --replication 1 >/dev/null
  done
  kill "$CS_PID"; wait "$CS_PID" 2>/dev/null || true; CS_PID=""
  kill -KILL "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  start_timed; printf '%-50s %8d %8d\n' "restart after SIGKILL (snapshot + $TAIL entries)" "$CHUNKS" "$MS"
  stop
  if [ "$run" = 1 ]; then
    echo "snapshot: $(stat -c %s "$OUT/master/raft-snapshot") bytes; raft-log: $(stat -c %s "$OUT/master/raft-log") bytes"
  fi
done
