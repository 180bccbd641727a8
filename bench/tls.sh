#!/usr/bin/env bash
# bench/tls.sh — what TLS costs: `cairn bench` with and without TLS on the same machine, in one
# run, modes alternating.
#
# For each cell (SIZE:C:RECORDS) and run, starts a master and 3 chunkservers as separate
# processes on 127.0.0.1 (RF 3, fsync before every ack) twice: plaintext, and with --tls-dir
# (a cluster made by `cairn certs init`: every connection TLS with mutual authentication,
# client → master, client → chunkserver, master ↔ chunkserver, chunkserver → chunkserver); runs
# `cairn bench` on a new log; prints records/s, MB/s and p50/p99 per mode, and TLS ÷ plaintext.
#
# Usage: bench/tls.sh [CAIRN_BINARY]   (default: this checkout's release build, built first)
# Env: CELLS ("1024:32:60000 65536:32:6000"), RUNS (2), PORT (7550: the master; chunkservers on
#      the next three), OUT (/tmp/cairn-bench-tls, wiped).
# Every process started here binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CELLS="${CELLS:-1024:32:60000 65536:32:6000}"
RUNS="${RUNS:-2}"
PORT="${PORT:-7550}"
OUT="${OUT:-/tmp/cairn-bench-tls}"
MASTER="127.0.0.1:$PORT"
BIN="${1:-}"
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -q -p cairn-cli)
  BIN="$ROOT/target/release/cairn"
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
"$BIN" certs init "$OUT/certs" >/dev/null

echo "| size | C | run | mode | records/s | MB/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|---|---|---|"
for cell in $CELLS; do
  IFS=: read -r size c records <<<"$cell"
  for run in $(seq "$RUNS"); do
    for mode in plain tls; do
      dir="$OUT/$size-$c-$run-$mode"
      mkdir -p "$dir"
      tls=(); env=()
      if [ "$mode" = tls ]; then tls=(--tls-dir "$OUT/certs"); env=(CAIRN_TLS_DIR="$OUT/certs"); fi
      "$BIN" master --listen "$MASTER" --data "$dir/master" "${tls[@]}" 2>"$dir/master.log" &
      PIDS+=($!)
      for cs in 1 2 3; do
        "$BIN" chunkserver --listen "127.0.0.1:$((PORT + cs))" --master "$MASTER" \
          --data "$dir/cs$cs" "${tls[@]}" 2>"$dir/cs$cs.log" &
        PIDS+=($!)
      done
      for _ in $(seq 100); do
        env "${env[@]}" "$BIN" create /bench --master "$MASTER" >/dev/null 2>&1 && break
        sleep 0.3
      done
      result=$(env "${env[@]}" "$BIN" bench --master "$MASTER" --log /bench --records "$records" \
        --size "$size" --concurrency "$c" --no-replay --json)
      stop_all
      # The data (hundreds of MB a run at 64 KiB) goes; the logs stay.
      rm -rf "$dir/master" "$dir"/cs?
      echo "$size $c $run $mode $result" >>"$OUT/results"
      printf '| %s | %s | %s | %s | %.0f | %.1f | %s | %s |\n' "$size" "$c" "$run" "$mode" \
        "$(field records_per_sec <<<"$result")" \
        "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["records_per_sec"]*int(sys.argv[2])/1e6)' "$result" "$size")" \
        "$(field p50_us <<<"$result")" "$(field p99_us <<<"$result")"
    done
  done
done
python3 - "$OUT/results" <<'PY'
import json, sys, collections
rates = collections.defaultdict(list)
for line in open(sys.argv[1]):
    size, c, run, mode, result = line.split(" ", 4)
    rates[(size, c, mode)].append(json.loads(result)["records_per_sec"])
print()
print("| size | C | plaintext records/s (mean) | TLS records/s (mean) | TLS ÷ plaintext |")
print("|---|---|---|---|---|")
for (size, c) in sorted({(s, c) for (s, c, _) in rates}, key=lambda k: int(k[0])):
    p = sum(rates[(size, c, "plain")]) / len(rates[(size, c, "plain")])
    t = sum(rates[(size, c, "tls")]) / len(rates[(size, c, "tls")])
    print(f"| {size} | {c} | {p:,.0f} | {t:,.0f} | {t / p:.2f} |")
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
