#!/usr/bin/env bash
# bench/pipeline: preload the clicks topic, then measure the source limit, the sink limit, a
# Python baseline and `runnel process` in one run. Usage: bench/pipeline/run.sh [EVENTS]
# (default 2,000,000). See bench/README.md.
#   bench/pipeline/run.sh --processor EVENTS ROUNDS BASELINE [CANDIDATE]: `runnel process` alone,
#   two binaries alternating over one preloaded topic (bench/pipeline/processor.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
scripts/stack up >&2
if ! python3 -c "import confluent_kafka, clickhouse_connect, clickhouse_driver, woothee" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r bench/baselines/requirements.txt
fi
cargo build --release --locked -p runnel -p runnel-bench >&2
# A broker of the run's own (tansu, as the local stack's, on a new database), unless
# RUNNEL_KAFKA_BROKERS names one: the local stack's broker costs more CPU per message as its
# database grows with every test and bench run (bench/README.md), so runs on a shared one do
# not compare from day to day. The local broker answers only with idempotence off.
if [ -z "${RUNNEL_KAFKA_BROKERS:-}" ]; then
  export RUNNEL_KAFKA_IDEMPOTENCE=${RUNNEL_KAFKA_IDEMPOTENCE:-false}
  BROKER_DIR=$(mktemp -d /tmp/runnel-bench-broker.XXXXXX)
  BROKER_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$BROKER_DIR" && exec tansu broker --storage-engine "sqlite://tansu.db" \
    --listener-url "tcp://127.0.0.1:$BROKER_PORT" --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    >tansu.log 2>&1 </dev/null) &
  BROKER_PID=$!
  trap 'kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; rm -rf "$BROKER_DIR"' EXIT
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && break; sleep 0.1; done
  (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null || { cat "$BROKER_DIR/tansu.log" >&2; echo "the bench's broker did not start" >&2; exit 1; }
  export RUNNEL_KAFKA_BROKERS=127.0.0.1:$BROKER_PORT RUNNEL_BENCH_BROKER_PID=$BROKER_PID
  echo "[bench] a broker of this run's own: tansu on 127.0.0.1:$BROKER_PORT, data in $BROKER_DIR" >&2
fi
if [ "${1:-}" = "--processor" ]; then
  shift
  python3 bench/pipeline/processor.py "$@"
else
  python3 bench/pipeline/bench.py "$@"
fi
