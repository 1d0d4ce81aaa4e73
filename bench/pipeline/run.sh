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
# The local broker (tansu) answers the edge's unacknowledged producer only with idempotence off.
if [ -z "${RUNNEL_KAFKA_BROKERS:-}" ]; then export RUNNEL_KAFKA_IDEMPOTENCE=${RUNNEL_KAFKA_IDEMPOTENCE:-false}; fi
if [ "${1:-}" = "--processor" ]; then
  shift
  exec python3 bench/pipeline/processor.py "$@"
fi
exec python3 bench/pipeline/bench.py "$@"
