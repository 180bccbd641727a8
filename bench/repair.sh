#!/usr/bin/env bash
# bench/repair.sh — how fast Cairn heals, measured on real processes.
#
# 1. starts a master and 4 chunkservers (release build, default timings unless overridden:
#    heartbeat 1 s, dead after 10 s, re-replication bound 64 MiB/s per chunkserver);
# 2. fills a log (64 MiB chunks, 64 KiB records) until each chunkserver holds about FILL_GIB
#    GiB of sealed chunks (3 replicas over 4 chunkservers: FILL_GIB * 4/3 GiB of log);
# 3. measures append throughput (1 KiB records, 32 in flight) on a second log;
# 4. SIGKILLs one chunkserver and polls `stat` until
#    every sealed chunk of the filled log has 3 replicas again: time to full replication (from
#    the kill, and from the first copy the master starts), bytes copied and MB/s (from the
#    master's log); the same append benchmark runs again from the first copy on, for append
#    throughput during re-replication as a ratio to before;
# 5. seal-and-roll latency: appends one record at a time to a third log, SIGKILLs the open
#    chunk's primary, and reports the longest append latency (an append that was in flight at the
#    kill: the time from the primary's death to its acknowledgement on the next chunk, within
#    one normal append).
#
# Usage: bench/repair.sh        Env: FILL_GIB (default 1), PORT (default 7600), OUT (default
# /tmp/cairn-repair, wiped), DEAD_AFTER_MS (default 10000), HEARTBEAT_MS (default 1000).
# Every process started here binds 127.0.0.1 and is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILL_GIB="${FILL_GIB:-1}"
PORT="${PORT:-7600}"
OUT="${OUT:-/tmp/cairn-repair}"
DEAD_AFTER_MS="${DEAD_AFTER_MS:-10000}"
HEARTBEAT_MS="${HEARTBEAT_MS:-1000}"
MASTER="127.0.0.1:$PORT"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }

rm -rf "$OUT"; mkdir -p "$OUT"
log "building cairn (release)"
(cd "$ROOT" && cargo build --release -q -p cairn-cli)
CAIRN="$ROOT/target/release/cairn"

declare -A PID
stop_all() {
  for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_all EXIT

"$CAIRN" master --listen "$MASTER" --data "$OUT/master" --heartbeat-ms "$HEARTBEAT_MS" \
  --dead-after-ms "$DEAD_AFTER_MS" 2>"$OUT/master.log" &
PID[master]=$!
for i in 1 2 3 4; do
  "$CAIRN" chunkserver --listen "127.0.0.1:$((PORT + i))" --master "$MASTER" \
    --data "$OUT/cs$i" --heartbeat-ms "$HEARTBEAT_MS" 2>"$OUT/cs$i.log" &
  PID[cs$i]=$!
done
for _ in $(seq 100); do
  "$CAIRN" create /probe --master "$MASTER" >/dev/null 2>&1 && break
  sleep 0.3
done

records=$(python3 -c "print(int($FILL_GIB * 4 / 3 * (1 << 30) / 65536))")
log "filling /fill with $records records of 64 KiB"
"$CAIRN" bench --master "$MASTER" --log /fill --records "$records" --size 65536 \
  --concurrency 32 --json --no-replay >"$OUT/fill.json"
du -sh "$OUT"/cs* >&2

bench_1k() {
  "$CAIRN" bench --master "$MASTER" --log "$1" --records "$2" --size 1024 --concurrency 32 \
    --json --no-replay
}
log "append throughput before the failure"
bench_1k /before 100000 >"$OUT/before.json"

victim=cs2
log "SIGKILL $victim (pid ${PID[$victim]})"
t_kill=$(now)
kill -KILL "${PID[$victim]}"; wait "${PID[$victim]}" 2>/dev/null || true; unset 'PID[$victim]'
victim_addr="127.0.0.1:$((PORT + 2))"

# The append benchmark runs while chunks are being copied: start it with the first copy.
until grep -q "copying replica" "$OUT/master.log"; do sleep 0.1; done
t_copy=$(now)
bench_1k /during 150000 >"$OUT/during.json" &
bench_pid=$!
while :; do
  short=$("$CAIRN" stat /fill --json --master "$MASTER" | python3 -c '
import json, sys
d = json.load(sys.stdin); v = sys.argv[1]
print(sum(1 for c in d["chunks"] if c["state"] == "sealed" and c["length"] > 32
          and (len(c["replicas"]) < 3 or v in c["replicas"])))' "$victim_addr")
  [ "$short" = 0 ] && break
  sleep 0.5
done
t_full=$(now)
t_bench_started=$t_copy
wait "$bench_pid"
t_bench_done=$(now)

log "restart $victim (its stale and extra replicas are deleted or kept as the master decides)"
"$CAIRN" chunkserver --listen "$victim_addr" --master "$MASTER" --data "$OUT/$victim" \
  --heartbeat-ms "$HEARTBEAT_MS" 2>>"$OUT/$victim.log" &
PID[$victim]=$!
sleep $(( HEARTBEAT_MS * 3 / 1000 + 1 ))

log "seal-and-roll latency: one append at a time, then SIGKILL the open chunk's primary"
"$CAIRN" create /roll --master "$MASTER" >/dev/null
"$CAIRN" bench --master "$MASTER" --log /roll --records 1 --size 1024 --concurrency 1 --json \
  --no-replay >/dev/null
primary=$("$CAIRN" stat /roll --json --master "$MASTER" | python3 -c '
import json, sys
print([c for c in json.load(sys.stdin)["chunks"] if c["state"] == "open"][0]["primary"])')
"$CAIRN" bench --master "$MASTER" --log /roll --records 6000 --size 1024 --concurrency 1 \
  --json --no-replay >"$OUT/roll.json" &
roll_pid=$!
sleep 2
for i in 1 2 3 4; do
  if [ "127.0.0.1:$((PORT + i))" = "$primary" ]; then
    log "SIGKILL cs$i, the primary of /roll's open chunk"
    kill -KILL "${PID[cs$i]}"; wait "${PID[cs$i]}" 2>/dev/null || true; unset "PID[cs$i]"
  fi
done
wait "$roll_pid"

python3 - "$OUT" "$t_kill" "$t_full" "$FILL_GIB" "$t_copy" "$t_bench_done" <<'PY'
import json, re, sys, datetime
out, t_kill, t_full, gib = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
t_copy, t_bench_done = float(sys.argv[5]), float(sys.argv[6])
load = lambda n: json.load(open(f"{out}/{n}.json"))
before, during, roll, fill = load("before"), load("during"), load("roll"), load("fill")
copies, copied, first = 0, 0, None
for line in open(f"{out}/master.log"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "copying replica" in line and first is None:
        first = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    m = re.search(r"replica copied.*copied=(\d+)", line)
    if m:
        copies += 1; copied += int(m.group(1))
full = t_full - t_kill
copy_phase = t_full - first if first else float("nan")
print("== re-replication after losing 1 of 4 chunkservers (each held ~%.1f GiB of sealed chunks)" % gib)
print(f"fill: {fill['records']} records of 64 KiB at {fill['mb_per_sec']:.1f} MB/s")
print(f"time from SIGKILL to full replication: {full:.1f} s")
print(f"  of which detection (dead-after) until the first copy started: {full - copy_phase:.1f} s")
print(f"  copy phase: {copy_phase:.1f} s, {copies} chunk copies, {copied / 1e6:.0f} MB copied, "
      f"{copied / 1e6 / copy_phase:.1f} MB/s")
print(f"append 1 KiB C=32 before: {before['records_per_sec']:.0f} records/s; during the copies: "
      f"{during['records_per_sec']:.0f} records/s; ratio {during['records_per_sec'] / before['records_per_sec']:.2f} "
      f"(the benchmark ran {t_bench_done - t_copy:.1f} s from the first copy; the copy phase lasted {t_full - t_copy:.1f} s)")
print(f"seal-and-roll: longest append latency across the primary's SIGKILL {roll['max_us'] / 1000:.1f} ms "
      f"(p50 {roll['p50_us']} us, {roll['records']} appends)")
PY
