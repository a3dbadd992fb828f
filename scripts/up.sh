#!/usr/bin/env bash
# Starts seatgate on this machine with demo data: checks (and starts) PostgreSQL, Redis and
# RabbitMQ, builds the release binaries, migrates, loads the demo catalog, then runs two API
# instances, the workers and seatgate-lb in front of the APIs, and prints where to find them.
# Ctrl-C stops everything (gracefully: the lb drains, the APIs report not-ready first); a
# process that exits by itself is named, and the others are stopped. Logs: target/up/*.log.
#   SEATGATE_UP_INSTANCES=3 scripts/up.sh     more API instances
#   SEATGATE_UP_API_PORT=8181 scripts/up.sh   the first API instance's port (8081; then 8082, ...)
#   scripts/up.sh --cluster                   the same on a local Redis Cluster (3 masters,
#                                             3 replicas, scripts/redis-cluster.sh), stopped
#                                             with the rest
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=""
for arg in "$@"; do
  case "$arg" in
    --cluster) cluster=1 ;;
    *) echo "usage: $0 [--cluster]" >&2; exit 2 ;;
  esac
done
scripts/ensure-services.sh

echo "building release binaries (the first build takes several minutes)..."
cargo build --release --locked --workspace --bins

# One secret for every instance (a token from one is valid on all); made for this run unless
# set. Set SEATGATE_JWT_SECRET yourself to keep tokens valid across restarts.
export SEATGATE_JWT_SECRET="${SEATGATE_JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
# Likewise one ticket signing key, so a ticket signed by one instance verifies on all.
export SEATGATE_TICKET_SIGNING_KEY="${SEATGATE_TICKET_SIGNING_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export SEATGATE_ADMIN_EMAIL="${SEATGATE_ADMIN_EMAIL:-admin@seatgate.local}"
if [ -z "${SEATGATE_ADMIN_PASSWORD:-}" ]; then
  # A laptop demo: the placeholder password is accepted (and start-up says so in its log).
  export SEATGATE_ADMIN_PASSWORD=admin-password SEATGATE_DEMO=1
fi
# An instance reports not-ready this long before it stops listening, so the lb (checking every
# second) stops sending it traffic first.
export SEATGATE_SHUTDOWN_GRACE_MS="${SEATGATE_SHUTDOWN_GRACE_MS:-1500}"
instances="${SEATGATE_UP_INSTANCES:-2}"
api_port="${SEATGATE_UP_API_PORT:-8081}"
lb_listen="${SEATGATE_LB_LISTEN:-127.0.0.1:8000}"
lb_admin="${SEATGATE_LB_ADMIN_LISTEN:-127.0.0.1:9090}"
workers_metrics="${SEATGATE_WORKERS_METRICS_LISTEN:-127.0.0.1:9100}"
bin=target/release
mkdir -p target/up
cluster_dir=target/up/redis-cluster
pids=()
names=()
stopping=""
# Stops every process started here, gracefully (SIGTERM: the lb drains, the APIs report
# not-ready first), and waits for them.
stop_all() {
  [ -n "$stopping" ] && return 0
  stopping=1
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$cluster" ]; then scripts/redis-cluster.sh down "$cluster_dir" && echo "redis cluster stopped."; fi
}
on_request() {
  trap - INT TERM
  echo
  echo "stopping on request: draining seatgate-lb, the API instances and the workers..."
  stop_all
  echo "stopped."
  exit 0
}
trap on_request INT TERM
trap stop_all EXIT

# The cluster is started only once the traps are set, so a failing migration or seed (or a
# Ctrl-C) stops it too.
if [ -n "$cluster" ]; then
  scripts/redis-cluster.sh down "$cluster_dir" # what an interrupted run left
  SEATGATE_REDIS_CLUSTER_NODES="$(scripts/redis-cluster.sh up "$cluster_dir" | sed -n 's/^SEATGATE_REDIS_CLUSTER_NODES=//p')"
  [ -n "$SEATGATE_REDIS_CLUSTER_NODES" ] || { echo "error: the Redis Cluster did not come up" >&2; exit 1; }
  export SEATGATE_REDIS_CLUSTER_NODES
fi

$bin/seatgate migrate
$bin/seatgate seed-demo
# start NAME LOG COMMAND...: runs one process in the background, its output in LOG.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!)
  names+=("$name (log: $log)")
}

upstreams=()
for i in $(seq 1 "$instances"); do
  port=$((api_port + i - 1))
  start "API instance $i" "target/up/api-$i.log" env SEATGATE_LISTEN="127.0.0.1:$port" $bin/seatgate serve
  upstreams+=("http://127.0.0.1:$port")
done
start "seatgate-workers" target/up/workers.log env SEATGATE_WORKERS_METRICS_LISTEN="$workers_metrics" \
  $bin/seatgate-workers all
# /api/v1/auth/* costs an argon2 hash (~20-50 ms of a core) per request, so one client IP gets
# 2 such requests per second sustained, bursts of 10: plenty for people signing in (a venue's
# shared NAT included), and a single flooder can take only ~2 hashes/s of an instance's ~40-100.
# Everything else is left to the API's own limits (SEATGATE_LB_RATE_LIMIT_RPS stays off).
route_limits="${SEATGATE_LB_ROUTE_LIMITS:-/api/v1/auth/=2:10}"
start "seatgate-lb" target/up/lb.log env SEATGATE_LB_LISTEN="$lb_listen" SEATGATE_LB_ADMIN_LISTEN="$lb_admin" \
  SEATGATE_LB_UPSTREAMS="$(IFS=,; echo "${upstreams[*]}")" SEATGATE_LB_STRATEGY=least_conn \
  SEATGATE_LB_ROUTE_LIMITS="$route_limits" $bin/seatgate-lb

for _ in $(seq 1 120); do
  curl -fsS "http://$lb_listen/health/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
if ! curl -fsS "http://$lb_listen/health/ready" >/dev/null 2>&1; then
  echo "seatgate did not become ready; logs are in target/up/" >&2
  exit 1
fi

cat <<MSG

  seatgate is running at http://${lb_listen}   (seatgate-lb in front of ${instances} API instances)
    web app      http://${lb_listen}/            (seat maps live; admin page: http://${lb_listen}/#/admin)
    showtimes    curl http://${lb_listen}/api/v1/showtimes
    API docs     http://${lb_listen}/docs/
    health       http://${lb_listen}/health/ready
    metrics      API http://${lb_listen}/metrics   workers http://${workers_metrics}/metrics   lb http://${lb_admin}/metrics
  demo user      demo@seatgate.local / demo-password
  admin          ${SEATGATE_ADMIN_EMAIL} / ${SEATGATE_ADMIN_PASSWORD}
  redis          ${SEATGATE_REDIS_CLUSTER_NODES:+cluster }${SEATGATE_REDIS_CLUSTER_NODES:-${SEATGATE_REDIS_URL:-redis://127.0.0.1:6379}}
  logs           target/up/
  Ctrl-C stops everything.

MSG
# Only a process ending by itself gets past this wait (Ctrl-C and SIGTERM go to on_request).
wait -n "${pids[@]}" || true
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "error: ${names[$i]} exited by itself; stopping the others" >&2
  fi
done
exit 1
