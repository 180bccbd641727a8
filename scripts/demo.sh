#!/usr/bin/env bash
# Builds cairn, starts a local cluster (master + 3 chunkservers on 127.0.0.1) in a temporary
# directory, appends three records, replays them, shows the log's chunks, and stops the cluster.
# Usage: scripts/demo.sh [PORT]   (default 7000; the chunkservers use the next three ports)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${1:-7000}"
MASTER="127.0.0.1:$PORT"

cargo build --release -q -p cairn-cli
CAIRN=./target/release/cairn
DATA="$(mktemp -d /tmp/cairn-demo.XXXXXX)"

"$CAIRN" local --data "$DATA" --port "$PORT" 2>"$DATA/local.log" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

# Wait (at most 30 s) until the master answers and the chunkservers have registered.
for _ in $(seq 100); do
  if "$CAIRN" create /demo --master "$MASTER" --chunk-size 1MiB 2>/dev/null; then break; fi
  kill -0 "$PID" 2>/dev/null || { cat "$DATA/local.log"; exit 1; }
  sleep 0.3
done

echo "== append (one record per line; one JSON line per acknowledged record)"
printf 'first\nsecond\nthird\n' | "$CAIRN" append /demo --master "$MASTER" --json
echo "== replay"
"$CAIRN" replay /demo --master "$MASTER"
echo "== stat"
"$CAIRN" stat /demo --master "$MASTER"
