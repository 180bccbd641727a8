#!/usr/bin/env bash
# bench/limits.sh — what this disk (and loopback) can do, measured with fio and iperf3, next to
# what Cairn's chunk store does on the same disk (`cairn bench store`), with the ratios we hold
# ourselves to:
#
#   store, 1 KiB records, 32 appenders:  records/s  / fio 4 KiB write+fdatasync IOPS  >= 8
#   store, 64 KiB records, 32 appenders: MB/s       / fio 64 KiB write+fdatasync MB/s >= 1.0
#
# fio jobs use the same parameters as the peers' benchmark's own fio run (its limits.sh), so the
# numbers are comparable:
#   seq1m   1 MiB sequential writes, O_DIRECT, libaio, QD16
#   sync4k  4 KiB writes, fdatasync after each, QD1
#   sync64k 64 KiB writes, fdatasync after each, QD1
# and, when iperf3 is installed, one loopback TCP stream for 5 s.
#
# Usage: bench/limits.sh [--dir DIR] [--quick] [--json FILE]
#   --dir DIR / env LIMITS_DIR  scratch directory on the disk to measure
#                               (default: target/limits under the repository)
#   --quick / env RUNTIME=N     seconds per fio job (default 10; --quick: 4)
#   env RECORDS_1K, RECORDS_64K records per store bench (default 200000 and 20000)
#   --json FILE                 also write every figure as one JSON object
# Exit status: 0 when both ratios meet their targets, 1 when one misses, 2 on a usage error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${LIMITS_DIR:-$ROOT/target/limits}"
RUNTIME="${RUNTIME:-10}"
RECORDS_1K="${RECORDS_1K:-200000}"
RECORDS_64K="${RECORDS_64K:-20000}"
JSON_OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --quick) RUNTIME=4; shift ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

have() { command -v "$1" >/dev/null 2>&1; }
if ! have fio; then
  echo "fio missing: installing it with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q fio >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q fio >/dev/null; }
fi

rm -rf "$DIR"
mkdir -p "$DIR/fio"
IPERF_PID=""
cleanup() {
  if [[ -n "$IPERF_PID" ]] && kill -0 "$IPERF_PID" 2>/dev/null; then
    kill "$IPERF_PID" 2>/dev/null || true
    wait "$IPERF_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

echo "building cairn (release) ..." >&2
(cd "$ROOT" && cargo build --release -q -p cairn-cli)
CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"

echo "disk: $(df -hT "$DIR" | awk 'NR==2{print $1" "$2}'), ${RUNTIME}s per fio job, scratch $DIR" >&2

# fio_job NAME ARGS... : one time-bounded fio job, JSON kept in $DIR/NAME.json
fio_job() {
  local name="$1"; shift
  echo "fio $name ..." >&2
  timeout $((RUNTIME + 120)) fio --name="$name" --directory="$DIR/fio" --output-format=json \
    --runtime="$RUNTIME" --time_based --group_reporting "$@" > "$DIR/$name.json"
  rm -f "$DIR/fio/"*
}
fio_job seq1m --rw=write --bs=1M --size=2G --direct=1 --ioengine=libaio --iodepth=16
fio_job sync4k --rw=write --bs=4k --size=256M --ioengine=sync --fdatasync=1
fio_job sync64k --rw=write --bs=64k --size=1G --ioengine=sync --fdatasync=1

if have iperf3; then
  echo "iperf3 loopback, 1 stream, 5 s ..." >&2
  PORT=15301
  iperf3 -s -1 -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
  IPERF_PID=$!
  sleep 0.5
  timeout 30 iperf3 -c 127.0.0.1 -p "$PORT" -t 5 -J > "$DIR/iperf.json" || rm -f "$DIR/iperf.json"
  wait "$IPERF_PID" 2>/dev/null || true
  IPERF_PID=""
else
  echo "iperf3 not installed: skipping loopback TCP" >&2
fi

echo "cairn bench store, 1 KiB x $RECORDS_1K, C=32 ..." >&2
"$CAIRN" bench store --dir "$DIR/store1k" --records "$RECORDS_1K" --size 1024 --concurrency 32 --json > "$DIR/store1k.json"
rm -rf "$DIR/store1k"
echo "cairn bench store, 64 KiB x $RECORDS_64K, C=32 ..." >&2
"$CAIRN" bench store --dir "$DIR/store64k" --records "$RECORDS_64K" --size 65536 --concurrency 32 --json > "$DIR/store64k.json"
rm -rf "$DIR/store64k"

JSON_OUT="$JSON_OUT" python3 - "$DIR" <<'PY'
import json, os, sys
d = sys.argv[1]
load = lambda n: json.load(open(os.path.join(d, n)))
def fio(name):
    j = load(f"{name}.json")["jobs"][0]
    w = j["write"]
    sync = j.get("sync", {}).get("lat_ns", {}).get("percentile", {})
    p = lambda q: next((v / 1e3 for k, v in sync.items() if abs(float(k) - q) < 1e-6), float("nan"))
    return {"iops": w["iops"], "mb_per_sec": w["bw_bytes"] / 1e6, "fsync_p50_us": p(50.0), "fsync_p99_us": p(99.0)}
out = {"fio_seq1m_direct": fio("seq1m"), "fio_4k_fdatasync": fio("sync4k"), "fio_64k_fdatasync": fio("sync64k")}
if os.path.exists(os.path.join(d, "iperf.json")):
    out["iperf3_loopback_mb_per_sec"] = load("iperf.json")["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
s1, s64 = load("store1k.json"), load("store64k.json")
out["store_1k_c32"], out["store_64k_c32"] = s1, s64
r1 = s1["records_per_sec"] / out["fio_4k_fdatasync"]["iops"]
r64 = s64["mb_per_sec"] / out["fio_64k_fdatasync"]["mb_per_sec"]
out["ratio_1k_records_per_fio_4k_iops"], out["ratio_64k_mb_per_fio_64k_mb"] = r1, r64
rows = [
    ("fio 1 MiB seq write, O_DIRECT, QD16", f"{out['fio_seq1m_direct']['mb_per_sec']:.0f} MB/s", ""),
]
for key, label in (("fio_4k_fdatasync", "fio 4 KiB write+fdatasync, QD1"), ("fio_64k_fdatasync", "fio 64 KiB write+fdatasync, QD1")):
    f = out[key]
    rows.append((label, f"{f['iops']:.0f} IOPS, {f['mb_per_sec']:.1f} MB/s", f"fsync p50 {f['fsync_p50_us']:.0f} us, p99 {f['fsync_p99_us']:.0f} us"))
if "iperf3_loopback_mb_per_sec" in out:
    rows.append(("iperf3 loopback TCP, 1 stream", f"{out['iperf3_loopback_mb_per_sec']:.0f} MB/s", ""))
for s, label in ((s1, "store 1 KiB records, C=32"), (s64, "store 64 KiB records, C=32")):
    rows.append((label, f"{s['records_per_sec']:.0f} rec/s, {s['mb_per_sec']:.1f} MB/s",
                 f"p50 {s['p50_us']} us, p99 {s['p99_us']} us; {s['fsyncs']} fsyncs, {s['records_per_group']:.1f} rec/group"))
ok1, ok64 = r1 >= 8, r64 >= 1.0
rows.append(("ratio store 1 KiB rec/s / fio 4 KiB IOPS", f"{r1:.1f}", f"target >= 8: {'ok' if ok1 else 'MISSED'}"))
rows.append(("ratio store 64 KiB MB/s / fio 64 KiB MB/s", f"{r64:.2f}", f"target >= 1.0: {'ok' if ok64 else 'MISSED'}"))
w0 = max(len(r[0]) for r in rows); w1 = max(len(r[1]) for r in rows)
print(f"| {'measure'.ljust(w0)} | {'value'.ljust(w1)} | detail |")
print(f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|--------|")
for a, b, c in rows:
    print(f"| {a.ljust(w0)} | {b.ljust(w1)} | {c} |")
if os.environ.get("JSON_OUT"):
    json.dump(out, open(os.environ["JSON_OUT"], "w"), indent=1)
sys.exit(0 if ok1 and ok64 else 1)
PY
