#!/usr/bin/env bash
# Shows the master's status page (and `cairn status`) on a cluster in trouble, and takes a
# screenshot of the page with headless Chromium.
#
# Starts a master (--http) and 4 chunkservers as separate processes on 127.0.0.1, creates a log of
# 64 KiB chunks, appends 5,000 records (a few rolls), then kills chunkserver 4 and waits until the
# master calls it dead: its replicas are copied to the others meanwhile, so the page shows a dead
# chunkserver and re-replication progress (or, once done, a healthy cluster but for that one).
# Prints `cairn status`, the page's HTML size, and saves the screenshot.
#
# Usage: scripts/status-page.sh [OUT.png]   (default /tmp/cairn-status.png)
# Env: PORT (7600: the master; chunkservers on the next 4, HTTP on PORT+80), CAIRN (the binary;
#      default: built here in release mode), CHROMIUM (default: chromium; Debian's package),
#      KEEP (set: keep the data directories and logs).
# Every process it starts binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/cairn-status.png}"
PORT="${PORT:-7600}"
MASTER="127.0.0.1:$PORT"
HTTP="127.0.0.1:$((PORT + 80))"
CHROMIUM="${CHROMIUM:-chromium}"
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q -p cairn-cli
  CAIRN=./target/release/cairn
fi
command -v "$CHROMIUM" >/dev/null || { echo "no $CHROMIUM (apt-get install chromium)" >&2; exit 2; }
DATA="$(mktemp -d /tmp/cairn-status.XXXXXX)"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $DATA" >&2; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

"$CAIRN" master --listen "$MASTER" --data "$DATA/master" --http "$HTTP" \
  --heartbeat-ms 200 --dead-after-ms 2000 2>"$DATA/master.log" &
PIDS+=($!)
for i in 1 2 3 4; do
  "$CAIRN" chunkserver --listen "127.0.0.1:$((PORT + i))" --master "$MASTER" \
    --data "$DATA/cs$i" --heartbeat-ms 200 2>"$DATA/cs$i.log" &
  PIDS+=($!)
done
for _ in $(seq 100); do
  if "$CAIRN" create /orders --master "$MASTER" --chunk-size 64KiB 2>/dev/null; then break; fi
  sleep 0.3
done
seq -f 'order %06g: 3 widgets, paid' 5000 | "$CAIRN" append /orders --master "$MASTER" >/dev/null
"$CAIRN" create /exec/shop/inputs --master "$MASTER" >/dev/null
echo "== killing chunkserver 4 (127.0.0.1:$((PORT + 4)))"
kill -9 "${PIDS[4]}"
for _ in $(seq 100); do
  # (`cairn status` exits 1 once the cluster is degraded: that is what this waits for.)
  status="$("$CAIRN" status --master "$MASTER" --json || true)"
  grep -q '"live":false' <<<"$status" && break
  sleep 0.2
done
echo "== cairn status"
"$CAIRN" status --master "$MASTER" || true
page="$(curl -s "http://$HTTP/")"
echo "== the page at http://$HTTP/: ${#page} bytes"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,900 \
  --screenshot="$OUT" "http://$HTTP/" 2>"$DATA/chromium.log" || { cat "$DATA/chromium.log"; exit 1; }
echo "== screenshot: $OUT"
