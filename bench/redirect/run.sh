#!/usr/bin/env bash
# bench/redirect: Runnel's redirect of a cached link, with click capture on and off, against
# nginx answering `return 302` for the same path — same wrk connections and duration, the
# contenders alternating over several rounds on this machine (shared and noisy: compare ratios
# from one run, not absolute numbers across runs). nginx runs twice: with a worker per core
# (`worker_processes auto`, the target's reference) and with one worker, to set against the
# edge on one tokio worker thread.
#
#   bench/redirect/run.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Uses the local stack (scripts/stack up), topics under the prefix `bench.`; prints each
# contender's median requests/s and p50/p99 latency, and Runnel's ratios to nginx.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-8}
CONNECTIONS=${3:-64}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/runnel-bench-redirect.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pidfile in "$WORK/nginx.pid" "$WORK/nginx1.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

scripts/stack up >/dev/null
echo "building runnel (release)"
cargo build --release --locked --bin runnel 2>&1 | tail -n 1
RUNNEL=$CARGO_TARGET_DIR/release/runnel

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port); NGINX1_PORT=$(free_port); CAPTURE_PORT=$(free_port); BARE_PORT=$(free_port); ONE_PORT=$(free_port); NDJSON_PORT=$(free_port)
CAPTURE_METRICS_PORT=$(free_port); BARE_METRICS_PORT=$(free_port); ONE_METRICS_PORT=$(free_port); NDJSON_METRICS_PORT=$(free_port)

export RUNNEL_TOPIC_PREFIX=bench. RUNNEL_REDIS_PREFIX=bench: RUNNEL_GROUP_PREFIX=bench-
export RUNNEL_KAFKA_IDEMPOTENCE=false RUNNEL_LOG_FORMAT=text RUST_LOG=warn
"$RUNNEL" topics >/dev/null
keygen=$("$RUNNEL" api-key --name bench)
API_KEY=$(printf '%s\n' "$keygen" | sed -n 's/^key: *//p')
export RUNNEL_API_KEYS=$(printf '%s\n' "$keygen" | sed -n 's/^entry: *//p')

RUNNEL_EDGE_ADDR=127.0.0.1:$CAPTURE_PORT RUNNEL_EDGE_METRICS_ADDR=127.0.0.1:$CAPTURE_METRICS_PORT RUNNEL_SPOOL_DIR=$WORK/spool-capture \
  "$RUNNEL" edge >"$WORK/edge-capture.log" 2>&1 &
pids+=($!)
RUNNEL_EDGE_ADDR=127.0.0.1:$BARE_PORT RUNNEL_EDGE_METRICS_ADDR=127.0.0.1:$BARE_METRICS_PORT RUNNEL_SPOOL_DIR=$WORK/spool-bare RUNNEL_CAPTURE_CLICKS=false \
  "$RUNNEL" edge >"$WORK/edge-bare.log" 2>&1 &
pids+=($!)
# The capturing edge on one tokio worker thread (TOKIO_WORKER_THREADS=1): on two cores shared
# with wrk, a second worker mostly competes with wrk.
TOKIO_WORKER_THREADS=1 RUNNEL_EDGE_ADDR=127.0.0.1:$ONE_PORT RUNNEL_EDGE_METRICS_ADDR=127.0.0.1:$ONE_METRICS_PORT RUNNEL_SPOOL_DIR=$WORK/spool-one \
  "$RUNNEL" edge >"$WORK/edge-one.log" 2>&1 &
pids+=($!)
# The capturing edge writing NDJSON click lines (RUNNEL_CLICK_ENCODING=ndjson) instead of the
# default compact batches.
RUNNEL_CLICK_ENCODING=ndjson RUNNEL_EDGE_ADDR=127.0.0.1:$NDJSON_PORT RUNNEL_EDGE_METRICS_ADDR=127.0.0.1:$NDJSON_METRICS_PORT RUNNEL_SPOOL_DIR=$WORK/spool-ndjson \
  "$RUNNEL" edge >"$WORK/edge-ndjson.log" 2>&1 &
pids+=($!)
for port in $CAPTURE_PORT $BARE_PORT $ONE_PORT $NDJSON_PORT; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
code=$(curl -sf -X POST "http://127.0.0.1:$CAPTURE_PORT/api/links" -H "authorization: Bearer $API_KEY" \
  -H 'content-type: application/json' -d '{"url":"https://example.com/landing"}' | sed -E 's/.*"code":"([^"]+)".*/\1/')

# nginx_conf NAME WORKERS PORT: an nginx answering `return 302` on PORT, its pid in $WORK/NAME.pid.
nginx_conf() {
  cat >"$WORK/$1.conf" <<NGINX
worker_processes $2;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$3;
    location / { add_header Cache-Control "private, max-age=0"; return 302 https://example.com/landing; }
  }
}
NGINX
  /usr/sbin/nginx -c "$WORK/$1.conf" -p "$WORK"
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$3/$code" && break; sleep 0.1; done
}
nginx_conf nginx auto "$NGINX_PORT"
nginx_conf nginx1 1 "$NGINX1_PORT"

CONTENDERS="nginx nginx-1-worker runnel runnel-no-capture runnel-1-thread runnel-ndjson"
declare -A URLS=([nginx]="http://127.0.0.1:$NGINX_PORT/$code" [nginx-1-worker]="http://127.0.0.1:$NGINX1_PORT/$code" [runnel]="http://127.0.0.1:$CAPTURE_PORT/$code" [runnel-no-capture]="http://127.0.0.1:$BARE_PORT/$code" [runnel-1-thread]="http://127.0.0.1:$ONE_PORT/$code" [runnel-ndjson]="http://127.0.0.1:$NDJSON_PORT/$code")
for name in $CONTENDERS; do
  status=$(curl -s -o /dev/null -w '%{http_code}' "${URLS[$name]}")
  [ "$status" = 302 ] || { echo "$name answers $status, not 302" >&2; exit 1; }
  wrk -t1 -c"$CONNECTIONS" -d2s "${URLS[$name]}" >/dev/null   # warm-up
done

# CPU seconds (user + system) a set of processes has spent: the server under test and the broker.
cpu_of() {
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print t + ($12 + $13) / hz }' "/proc/$pid/stat")
  done
  echo "$total"
}
# An nginx's worker processes: the children of its master.
nginx_pids() { pgrep -P "$(cat "$WORK/$1.pid")" | tr '\n' ' '; }
BROKER_PID=$(cat .stack/kafka/tansu.pid 2>/dev/null || echo 0)
declare -A SERVER_PIDS=([nginx]="$(nginx_pids nginx)" [nginx-1-worker]="$(nginx_pids nginx1)" [runnel]="${pids[0]}" [runnel-no-capture]="${pids[1]}" [runnel-1-thread]="${pids[2]}" [runnel-ndjson]="${pids[3]}")

echo "rounds: $ROUNDS x ${SECONDS_PER_RUN}s per contender, $CONNECTIONS connections, wrk -t1, alternating"
for round in $(seq 1 "$ROUNDS"); do
  for name in $CONTENDERS; do
    # shellcheck disable=SC2086
    server_before=$(cpu_of ${SERVER_PIDS[$name]}); broker_before=$(cpu_of "$BROKER_PID")
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "${URLS[$name]}" >"$WORK/$name-$round.txt"
    # shellcheck disable=SC2086
    server_after=$(cpu_of ${SERVER_PIDS[$name]}); broker_after=$(cpu_of "$BROKER_PID")
    echo "cpu $server_before $server_after $broker_before $broker_after" >>"$WORK/$name-$round.txt"
    if grep -q "Non-2xx or 3xx" "$WORK/$name-$round.txt"; then echo "$name answered errors in round $round" >&2; cat "$WORK/$name-$round.txt" >&2; exit 1; fi
  done
  echo "  round $round done"
done

delivered=$(curl -s "http://127.0.0.1:$CAPTURE_METRICS_PORT/metrics" | awk '/^runnel_edge_clicks_(produced|spooled)_total/ {s+=$2} END {print s+0}')
python3 "$ROOT/bench/redirect/report.py" "$WORK" "$ROUNDS" "$delivered"
