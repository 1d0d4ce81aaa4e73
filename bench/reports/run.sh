#!/usr/bin/env bash
# bench/reports: every report through the edge's API against its raw-table equivalent, on
# 10,000,000 clicks over 100,000 links and 1,000,000 order events over 90 days, inserted into the
# raw tables so the materialized views fill as in production.
#
#   bench/reports/run.sh [--fresh] [CLICKS] [ORDERS]
#
# The data lives in the ClickHouse database `bench_reports` and is generated once (about two
# minutes per 10 M clicks here); `--fresh` drops and regenerates it. Prints p50/p99 per report
# through the API and over the raw tables, the speed-up and whether both gave the same rows;
# the rows also go to .stack/bench-reports.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
FRESH=0
if [ "${1:-}" = "--fresh" ]; then FRESH=1; shift; fi
CLICKS=${1:-10000000}
ORDERS=${2:-1000000}
DB=bench_reports
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/runnel-bench-reports.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

scripts/stack up >/dev/null
echo "building runnel (release)"
cargo build --release --locked --bin runnel 2>&1 | tail -n 1
RUNNEL=$CARGO_TARGET_DIR/release/runnel
CH=${RUNNEL_CLICKHOUSE_URL:-http://127.0.0.1:8123}

export RUNNEL_CLICKHOUSE_DATABASE=$DB RUNNEL_TOPIC_PREFIX=bench. RUNNEL_REDIS_PREFIX=bench-reports:
export RUNNEL_KAFKA_IDEMPOTENCE=false RUNNEL_LOG_FORMAT=text RUST_LOG=warn RUNNEL_RATE_LIMIT_REPORTS_PER_MIN=0
TOP_FILE=.stack/bench-reports-top.txt
generate=""
if [ $FRESH = 1 ] || [ ! -s "$TOP_FILE" ] \
   || [ "$(curl -sf "$CH/?database=$DB" --data-binary 'SELECT count() FROM clicks' 2>/dev/null)" != "$CLICKS" ]; then
  curl -sf "$CH/" --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null
  rm -f "$TOP_FILE"
  generate=--generate
fi
"$RUNNEL" topics >/dev/null
"$RUNNEL" migrate >/dev/null
keygen=$("$RUNNEL" api-key --name bench)
API_KEY=$(printf '%s\n' "$keygen" | sed -n 's/^key: *//p')
export RUNNEL_API_KEYS=$(printf '%s\n' "$keygen" | sed -n 's/^entry: *//p')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
METRICS_PORT=$(free_port)
RUNNEL_EDGE_METRICS_ADDR=127.0.0.1:$METRICS_PORT RUNNEL_EDGE_ADDR=127.0.0.1:$PORT RUNNEL_SPOOL_DIR=$WORK/spool "$RUNNEL" edge >"$WORK/edge.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

if [ -z "$generate" ]; then
  # Links made by an earlier run: make sure this Redis still has them. When neither Redis nor
  # the links topic has them any more (a reset stack), the clicks point at nothing the edge
  # knows: generate everything again.
  "$RUNNEL" links rebuild >/dev/null 2>&1 || true
  code0=$(cut -d: -f1 "$TOP_FILE")
  if ! curl -sf "http://127.0.0.1:$PORT/api/links/$code0" -H "authorization: Bearer $API_KEY" >/dev/null; then
    echo "link $code0 of the earlier run is gone (reset Redis and links topic): generating the data again"
    curl -sf "$CH/" --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null
    "$RUNNEL" migrate >/dev/null
    rm -f "$TOP_FILE"
    generate=--generate
  fi
fi
if [ -n "$generate" ]; then
  # The three most clicked links are real links (so /api/links/{code}/stats finds them); the
  # other 99,997 exist only in the click rows.
  top=()
  for i in 1 2 3; do
    body=$(curl -sf -X POST "http://127.0.0.1:$PORT/api/links" -H "authorization: Bearer $API_KEY" \
      -H 'content-type: application/json' -d "{\"url\":\"https://shop.example.com/landing/$i\"}") \
      || { echo "creating a link failed; see $WORK/edge.log" >&2; exit 1; }
    top+=("$(printf '%s' "$body" | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l["code"] + ":" + str(l["link_id"]))')")
  done
  (IFS=,; echo "${top[*]}") >"$TOP_FILE"
fi

python3 bench/reports/bench.py --rollup "$RUNNEL" --db "$DB" --edge "127.0.0.1:$PORT" --key "$API_KEY" --top "$(cat "$TOP_FILE")" \
  --clicks "$CLICKS" --orders "$ORDERS" $generate --json .stack/bench-reports.json

# Which way the top-links and link series reports went (docs/reports.md, "Top lists" and "Link days").
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^runnel_report_(top_links|link_series)_total' || true
