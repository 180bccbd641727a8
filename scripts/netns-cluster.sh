#!/usr/bin/env bash
# Runs a Cairn cluster the way separate hosts run it: the master, 4 chunkservers and the client
# each in its own Linux network namespace, joined by veth pairs on a private bridge
# (10.77.0.0/24), every connection on TLS (`cairn certs init`, `--tls-dir`). Appends and replays
# records, then takes one chunkserver's link down (`ip link set … down`: its process keeps
# running, unreachable) and checks that the master copies its chunks to the others and that a
# replay still returns every record. Needs root (ip netns); removes every namespace, link and
# process it made on exit.
#
# Usage: sudo scripts/netns-cluster.sh   (env CAIRN: the binary, default: built here, release)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q -p cairn-cli
  CAIRN="$PWD/target/release/cairn"
fi
ID=$(( $$ % 10000 ))
NS="cairn$ID"
BR="cbr$ID"
NET=10.77.0
DATA="$(mktemp -d /tmp/cairn-netns.XXXXXX)"
NODES=(m c1 c2 c3 c4 cl)
declare -A IP=([m]=$NET.10 [c1]=$NET.11 [c2]=$NET.12 [c3]=$NET.13 [c4]=$NET.14 [cl]=$NET.20)
PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do
    ip netns del "$NS-$n" 2>/dev/null || true
    ip link del "v$ID$n" 2>/dev/null || true
  done
  ip link del "$BR" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $DATA"; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

log "network: bridge $BR, namespaces $NS-{${NODES[*]}} on $NET.0/24"
ip link add "$BR" type bridge
ip link set "$BR" up
for n in "${NODES[@]}"; do
  ip netns add "$NS-$n"
  ip link add "v$ID$n" type veth peer name eth0 netns "$NS-$n"
  ip link set "v$ID$n" master "$BR" up
  ip -n "$NS-$n" addr add "${IP[$n]}/24" dev eth0
  ip -n "$NS-$n" link set eth0 up
  ip -n "$NS-$n" link set lo up
done
in_ns() { local n=$1; shift; ip netns exec "$NS-$n" "$@"; }

"$CAIRN" certs init "$DATA/certs" --hosts "${IP[m]},${IP[c1]},${IP[c2]},${IP[c3]},${IP[c4]}" >/dev/null
MASTER="${IP[m]}:7000"
# Started directly (not through a shell function, which would run in a subshell): `$!` is then
# the server itself (`ip netns exec` execs it), which cleanup stops.
ip netns exec "$NS-m" "$CAIRN" master --listen "$MASTER" --data "$DATA/master" \
  --tls-dir "$DATA/certs" --heartbeat-ms 300 --dead-after-ms 3000 \
  </dev/null >/dev/null 2>"$DATA/master.log" &
PIDS+=($!)
for c in c1 c2 c3 c4; do
  ip netns exec "$NS-$c" "$CAIRN" chunkserver --listen "${IP[$c]}:7001" --master "$MASTER" \
    --data "$DATA/$c" --tls-dir "$DATA/certs" </dev/null >/dev/null 2>"$DATA/$c.log" &
  PIDS+=($!)
done
client() { in_ns cl env CAIRN_TLS_DIR="$DATA/certs" CAIRN_MASTER="$MASTER" "$CAIRN" "$@"; }

for _ in $(seq 100); do
  client create /orders --chunk-size 64KiB >/dev/null 2>&1 && break
  sleep 0.3
done
log "appending 3000 records from $NS-cl (${IP[cl]}) over TLS"
seq -f 'order %06g' 3000 | client append /orders
n=$(client replay /orders 2>/dev/null | wc -l)
log "replayed $n records"
[ "$n" -eq 3000 ] || { echo "expected 3000 records" >&2; exit 1; }
echo "--- plaintext from the client's namespace (must fail):"
if in_ns cl "$CAIRN" ls --master "$MASTER" 2>&1; then echo "plaintext answered!" >&2; exit 1; fi
echo "--- a plaintext server on a non-loopback address (must refuse to start):"
if in_ns cl timeout 5 "$CAIRN" master --listen "${IP[cl]}:7000" --data "$DATA/rogue" 2>&1 | tail -1; then :; fi
client status || true

held=$(client stat /orders --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(1 for c in s["chunks"] if "'"${IP[c1]}"':7001" in json.dumps(c)))')
log "chunkserver c1 (${IP[c1]}) holds replicas of $held chunks; taking its link down"
ip link set "v${ID}c1" down
for i in $(seq 150); do
  status="$(client status --json 2>/dev/null || true)"
  if python3 -c '
import json, sys
s = json.loads(sys.argv[1])
dead = [c for c in s["chunkservers"] if not c["live"]]
sys.exit(0 if dead and s["under_replicated_total"] == 0 and s["repairs"]["copies_done"] > 0 else 1)
' "$status" 2>/dev/null; then
    log "after $((i * 200)) ms: c1 dead, every chunk back at 3 good replicas"
    break
  fi
  sleep 0.2
done
client status || true
n=$(client replay /orders 2>/dev/null | wc -l)
log "replayed $n records with c1 unreachable"
[ "$n" -eq 3000 ] || { echo "expected 3000 records" >&2; exit 1; }
log "ok"
