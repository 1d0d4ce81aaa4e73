#!/usr/bin/env bash
# bench/redirect/ab.sh: two capturing edges, one binary (or setting) against another. Starts
# both on the local stack, drives each in turn with `wrk -t1 -c64` (a browser's User-Agent,
# Referer and Accept-Language) for ROUNDS alternating rounds, and prints each one's median
# requests/s, edge CPU-µs per redirect (user + system, from /proc) and the broker's during the
# same rounds, and B's ratios to A.
#
#   bench/redirect/ab.sh A_BINARY B_BINARY [ROUNDS] [SECONDS]
#
# A_ENV / B_ENV: extra `NAME=value …` settings for edge A / B (e.g. B_ENV=TOKIO_WORKER_THREADS=1
# with the same binary twice).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
A=${1:?A_BINARY}; B=${2:?B_BINARY}; ROUNDS=${3:-5}; SECS=${4:-6}
command -v wrk >/dev/null || { echo "wrk is missing (bench/redirect/run.sh installs it)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/runnel-bench-ab.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/stack up >/dev/null
export RUNNEL_TOPIC_PREFIX=bench. RUNNEL_REDIS_PREFIX=bench: RUNNEL_GROUP_PREFIX=bench-
export RUNNEL_KAFKA_IDEMPOTENCE=false RUNNEL_LOG_FORMAT=text RUST_LOG=warn
"$A" topics >/dev/null
keygen=$("$A" api-key --name bench)
API_KEY=$(printf '%s\n' "$keygen" | sed -n 's/^key: *//p')
export RUNNEL_API_KEYS=$(printf '%s\n' "$keygen" | sed -n 's/^entry: *//p')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A PORT PID CODE
for side in A B; do
  binary=${!side}; extra_var=${side}_ENV; port=$(free_port)
  # shellcheck disable=SC2086
  env RUNNEL_EDGE_ADDR=127.0.0.1:$port RUNNEL_EDGE_METRICS_ADDR=127.0.0.1:$(free_port) RUNNEL_SPOOL_DIR="$WORK/spool-$side" \
    ${!extra_var:-} "$binary" edge >"$WORK/edge-$side.log" 2>&1 &
  PID[$side]=$!; pids+=($!); PORT[$side]=$port
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  CODE[$side]=$(curl -sf -X POST "http://127.0.0.1:$port/api/links" -H "authorization: Bearer $API_KEY" \
    -H 'content-type: application/json' -d '{"url":"https://example.com/landing"}' | sed -E 's/.*"code":"([^"]+)".*/\1/')
done

UA="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
drive() {
  wrk -t1 -c64 -d"$2" -H "User-Agent: $UA" -H "Referer: https://www.google.com/" -H "Accept-Language: en-US,en;q=0.9" \
    "http://127.0.0.1:${PORT[$1]}/${CODE[$1]}"
}
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
BROKER_PID=$(cat .stack/kafka/tansu.pid 2>/dev/null || echo 0)
for side in A B; do drive $side 2s >/dev/null; done
for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    before=$(cpu "${PID[$side]}"); broker_before=$(cpu "$BROKER_PID")
    requests=$(drive $side "${SECS}s" | awk '/requests in/ {print $1}')
    after=$(cpu "${PID[$side]}"); broker_after=$(cpu "$BROKER_PID")
    echo "$side $requests $before $after $broker_before $broker_after" >>"$WORK/rounds.txt"
  done
done
python3 - "$WORK/rounds.txt" "$SECS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    side, n, before, after, broker_before, broker_after = line.split()
    n = int(n)
    rows.setdefault(side, []).append((n, (float(after) - float(before)) * 1e6 / n,
                                      (float(broker_after) - float(broker_before)) * 1e6 / n))
secs = float(sys.argv[2])
for side in ("A", "B"):
    rps = statistics.median(n / secs for n, _, _ in rows[side])
    us = statistics.median(u for _, u, _ in rows[side])
    broker = statistics.median(b for _, _, b in rows[side])
    print(f"{side}: {rps:,.0f} req/s, {us:.2f} edge CPU-µs per redirect (rounds: "
          f"{', '.join(f'{u:.2f}' for _, u, _ in rows[side])}), broker {broker:.2f}")
median = lambda side, i: statistics.median(r[i] for r in rows[side])
print(f"B/A: edge CPU per redirect {median('B', 1) / median('A', 1):.3f}, "
      f"broker CPU per redirect {median('B', 2) / max(median('A', 2), 1e-9):.3f}, req/s {median('B', 0) / median('A', 0):.3f}")
PY
