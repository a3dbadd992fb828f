#!/usr/bin/env bash
# The whole test suite against real PostgreSQL, Redis and RabbitMQ (started here if down):
# 1. unit and integration tests (each test makes its own database, Redis key prefix and AMQP
#    names, so tests run in parallel);
# 2. the integration tests that touch Redis again, against a local Redis Cluster of 3 masters
#    and 3 replicas (scripts/redis-cluster.sh, stopped afterwards; skip it with CLUSTER=0);
# 3. README's curl walk-through (scripts/walkthrough.sh) against a throw-away seatgate
#    all-in-one (scripts/lib/throwaway-api.sh); installs jq with apt if it is missing; skip it
#    with WALKTHROUGH=0;
# 4. a bounded schemathesis run over the OpenAPI document (scripts/fuzz.sh; skip it with FUZZ=0);
# 5. the browser end-to-end test of the web front end in headless Chromium
#    (scripts/browser-test.sh, which installs chromium and its npm packages if missing; skip it
#    with BROWSER=0).
# Arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo test --workspace --all-targets --locked "$@"
if [ "${CLUSTER:-1}" != "0" ]; then
  echo "== the Redis-touching integration tests against a local Redis Cluster (scripts/redis-cluster.sh)"
  (
    cluster_dir=target/redis-cluster-test
    scripts/redis-cluster.sh down "$cluster_dir" # what an interrupted run left
    trap 'scripts/redis-cluster.sh down "$cluster_dir"' EXIT
    nodes="$(scripts/redis-cluster.sh up "$cluster_dir" | sed -n 's/^SEATGATE_REDIS_CLUSTER_NODES=//p')"
    SEATGATE_TEST_REDIS_CLUSTER_NODES="$nodes" cargo test --test api --locked -- \
      holds:: scripts:: bookings:: ledger:: live:: best:: onsale:: invariants:: reservation_events::
  )
fi
if [ "${WALKTHROUGH:-1}" != "0" ]; then
  echo "== README walk-through (scripts/walkthrough.sh) against a throw-away seatgate"
  (
    source scripts/lib/apt-install.sh
    apt_install_missing jq jq
    source scripts/lib/throwaway-api.sh
    throwaway_api_start walk
    scripts/walkthrough.sh "$API_URL" || { echo "error: the walk-through failed; server log: $API_LOG" >&2; exit 1; }
  )
fi
if [ "${FUZZ:-1}" != "0" ]; then
  scripts/fuzz.sh
fi
if [ "${BROWSER:-1}" != "0" ]; then
  scripts/browser-test.sh
fi
