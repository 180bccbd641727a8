#!/usr/bin/env bash
# bench/compare.sh — Cairn beside its peers, in one run, on one machine.
#
# 1. runs the peers' benchmark ($PEERS_DIR/run-peers.sh: the disk's limits with fio, then
#    NATS JetStream 2.15 with 3 replicas, with and without `sync_interval: always`) on the
#    workload cells below;
# 2. starts a Cairn cluster as separate processes (1 master, 3 chunkservers, RF 3, fsync before
#    every ack) and runs `cairn bench` on the same cells: one log, S-byte records, C appends in
#    flight, then a replay of the whole log;
# 3. prints one table with Cairn's figures, the peers' and the ratios.
#
# Usage: PEERS_DIR=DIR bench/compare.sh
# Env: PEERS_DIR (required: a checkout of the peers' benchmark, which is not part of this
#      repository: a directory with run-peers.sh and its peers' definitions), PEERS (default
#      "jetstream215-always jetstream215"), OUT (default /tmp/cairn-compare, wiped),
#      PEERS_TARGET (cargo target dir for the peers' load generator, default /tmp/peers-target),
#      CAIRN_PORT (default 7400: master; chunkservers on the next three ports).
# Every process started here binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_DIR="${PEERS_DIR:?set PEERS_DIR to a checkout of the peers benchmark (run-peers.sh)}"
PEERS="${PEERS:-jetstream215-always jetstream215}"
OUT="${OUT:-/tmp/cairn-compare}"
PORT="${CAIRN_PORT:-7400}"
MASTER="127.0.0.1:$PORT"
# size:concurrency:records — the peers bound each cell at 200000 records (6000 at 64 KiB) or 10 s.
CELLS="${CELLS:-1024:1:10000 1024:32:200000 65536:1:3000 65536:32:6000}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

rm -rf "$OUT"; mkdir -p "$OUT/cairn" "$OUT/peers"
log "building cairn (release)"
(cd "$ROOT" && cargo build --release -q -p cairn-cli)
CAIRN="$ROOT/target/release/cairn"

sizes=$(for c in $CELLS; do echo "${c%%:*}"; done | sort -un | tr '\n' ' ')
concs=$(for c in $CELLS; do c2="${c#*:}"; echo "${c2%%:*}"; done | sort -un | tr '\n' ' ')
log "peers: $PEERS; sizes $sizes; concurrency $concs"
(cd "$PEERS_DIR" && PEERS="$PEERS" SIZES="$sizes" CONCS="$concs" CENSUS=0 LIMITS=1 \
  BASE="$OUT/peers/run" OUT_DIR="$OUT/peers" OUT_TAG=compare \
  CARGO_TARGET_DIR="${PEERS_TARGET:-/tmp/peers-target}" ./run-peers.sh) >"$OUT/peers.log" 2>&1 \
  || { log "peers run failed; see $OUT/peers.log"; tail -20 "$OUT/peers.log" >&2; exit 1; }

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

log "starting cairn: master $MASTER, chunkservers on the next 3 ports"
"$CAIRN" master --listen "$MASTER" --data "$OUT/cairn/master" 2>"$OUT/cairn/master.log" &
PIDS+=($!)
for i in 1 2 3; do
  "$CAIRN" chunkserver --listen "127.0.0.1:$((PORT + i))" --master "$MASTER" \
    --data "$OUT/cairn/cs$i" 2>"$OUT/cairn/cs$i.log" &
  PIDS+=($!)
done
for _ in $(seq 100); do
  "$CAIRN" create /probe --master "$MASTER" >/dev/null 2>&1 && break
  sleep 0.3
done

: >"$OUT/cairn.jsonl"
for cell in $CELLS; do
  IFS=: read -r size conc records <<<"$cell"
  log "cairn S=$size C=$conc N=$records"
  "$CAIRN" bench --master "$MASTER" --log "/bench-$size-$conc" --records "$records" \
    --size "$size" --concurrency "$conc" --json \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(size=int(sys.argv[1]), concurrency=int(sys.argv[2])); print(json.dumps(d))' "$size" "$conc" \
    >>"$OUT/cairn.jsonl"
done
stop_all

python3 - "$OUT/cairn.jsonl" "$OUT/peers/results-compare.jsonl" "$OUT/peers/run/limits.txt" <<'PY'
import json, sys
cairn = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peers = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
print("== machine limits (same run)")
try:
    print(open(sys.argv[3]).read().rstrip())
except OSError:
    print("(limits.txt missing)")
print()
print("== append and replay: Cairn (3 replicas, fsync on every replica before each ack) vs peers")
hdr = f"{'system':<22}{'size':>7}{'C':>4}{'records/s':>11}{'MB/s':>9}{'p50 us':>9}{'p99 us':>9}{'replay MB/s':>13}"
print(hdr); print("-" * len(hdr))
def row(name, size, c, rps, mbs, p50, p99, rmbs):
    print(f"{name:<22}{size:>7}{c:>4}{rps:>11.0f}{mbs:>9.1f}{p50:>9.0f}{p99:>9.0f}{rmbs:>13.1f}")
for cd in cairn:
    s, c = cd["size"], cd["concurrency"]
    row("cairn", s, c, cd["records_per_sec"], cd["mb_per_sec"], cd["p50_us"], cd["p99_us"], cd["replay_mb_per_sec"])
    for p in peers:
        if p["size"] == s and p["concurrency"] == c and not p.get("error"):
            row(p["system"], s, c, p["records_per_s"], p["mb_per_s"], p["lat_p50_us"], p["lat_p99_us"], p["replay_mb_per_s"])
            print(f"{'  cairn / ' + p['system']:<33} records/s x{cd['records_per_sec'] / p['records_per_s']:.2f}"
                  f"  MB/s x{cd['mb_per_sec'] / p['mb_per_s']:.2f}"
                  f"  p50 x{cd['p50_us'] / max(p['lat_p50_us'], 1):.2f}"
                  f"  replay MB/s x{cd['replay_mb_per_sec'] / max(p['replay_mb_per_s'], 1e-9):.2f}")
    print()
PY
