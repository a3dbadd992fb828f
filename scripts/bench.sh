#!/usr/bin/env bash
# Runs a load scenario of seatgate-bench against ONE fresh release API instance on this machine.
#
#   scripts/bench.sh holds [extra seatgate-bench args, e.g. --users 32 --rounds 5]
#   scripts/bench.sh booking [args]     hold -> checkout -> confirmed, against pgbench
#   scripts/bench.sh sellout [args]     5,000 users race for a 1,000-seat showtime, then verify
#   scripts/bench.sh watchers [args]    2,000 live seat maps (SSE) while seats are held and released
#   scripts/bench.sh queue [args]       100,000 users in a waiting room, admitted at a rate, buying
#   scripts/bench.sh flood [args]       bogus logins and streams from one client vs 50 real buyers
#   scripts/bench.sh checkin [args]     two gates scan a 5,000-ticket showtime online
#   scripts/bench.sh cluster [args]     holds across 64 showtimes and on one hot showtime, on the
#                                       one Redis and then on a local 3-master Redis Cluster
#   scripts/bench.sh stadium [args]     `sellout` of a 20,000-seat showtime in 3 categories to
#                                       50,000 users (4,000 at a time, 98 % best-available),
#                                       through seatgate-lb in front of TWO API instances
#
# `stadium` runs `seatgate-bench sellout --users 50000 --rows 100 --seats-per-row 200
# --categories 3 --best-available-percent 98 --active-users 4000` (extra args come after these and
# override them), with a second API on the port after SEATGATE_BENCH_LISTEN's and seatgate-lb on
# the one after that (SEATGATE_LB_WORKER_THREADS 2, no rate limit, admin listener off), the
# buyers talking to the lb; both APIs share the database, Redis prefix, AMQP names and JWT secret.
#
# `cluster` runs `holds --showtimes 64` and `holds --showtimes 1` (extra args go to each) on the
# shared Redis, then starts scripts/redis-cluster.sh (3 masters, 3 replicas, under
# target/redis-cluster-bench), runs the same two with SEATGATE_REDIS_CLUSTER_NODES set (API and
# raw phase both in cluster mode), prints the four summaries side by side, and always stops the
# cluster on exit. Outputs in target/bench/cluster-<stamp>-*.txt.
#
# Checks (and starts) PostgreSQL, Redis and RabbitMQ, builds the release binaries, drops and
# recreates the database seatgate_bench, starts `seatgate serve` on 127.0.0.1:8090 (logs in
# target/bench/), waits for /health/ready, runs the scenario, and always stops the API on exit.
# Redis keys of the bench API live under the prefix "sgbench" and are deleted at the end.
# SEATGATE_BENCH_LISTEN, SEATGATE_BENCH_DATABASE, SEATGATE_BENCH_KEY_PREFIX and
# SEATGATE_BENCH_AMQP_NAMESPACE override the address and those names, to stay clear of another
# run on the same machine; SEATGATE_BENCH_RUST_LOG the log filter of the API and workers.
# The API uses the RabbitMQ names of the namespace "bench" (queues deleted before and after the
# run); `booking` and `sellout` also run `seatgate-workers all` with the API's settings; `booking`
# also gets a scratch database seatgate_bench_pgbench, migrated by `seatgate migrate` and
# dropped at the end, for its pgbench phases.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/bench.sh <scenario> [seatgate-bench args]   scenarios: holds, booking, sellout, watchers, queue, flood, checkin, cluster, stadium" >&2
  exit 2
}
[ $# -ge 1 ] || usage
scenario=$1
shift

if [ "$scenario" = cluster ]; then
  unset SEATGATE_REDIS_CLUSTER_NODES
  mkdir -p target/bench
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  cluster_dir=target/redis-cluster-bench
  scripts/redis-cluster.sh down "$cluster_dir" # what an interrupted run left
  trap 'scripts/redis-cluster.sh down "$cluster_dir"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  outputs=()
  for redis in single cluster; do
    if [ "$redis" = cluster ]; then
      nodes=$(scripts/redis-cluster.sh up "$cluster_dir" | sed -n 's/^SEATGATE_REDIS_CLUSTER_NODES=//p')
      [ -n "$nodes" ] || { echo "error: the local Redis Cluster did not start" >&2; exit 1; }
      export SEATGATE_REDIS_CLUSTER_NODES=$nodes
    fi
    for showtimes in 64 1; do
      out="target/bench/cluster-$stamp-$redis-$showtimes.txt"
      echo "== holds on $showtimes showtime(s), redis $redis (output: $out)"
      "$0" holds --showtimes "$showtimes" "$@" | tee "$out"
      outputs+=("$out")
    done
  done
  echo
  echo "== summary (median holds/s of each side)"
  for out in "${outputs[@]}"; do
    grep -E '^holds: median|^(api|raw) +[0-9]|^ratio' "$out"
  done
  exit 0
fi
with_workers=0
case "$scenario" in
  holds | watchers | flood | checkin) ;;
  booking | sellout | queue | stadium) with_workers=1 ;;
  -h | --help) usage ;;
  *) echo "error: unknown scenario '$scenario'" >&2; usage ;;
esac

# Overridable, so a run can stay clear of another one on the same machine.
listen=${SEATGATE_BENCH_LISTEN:-127.0.0.1:8090}
api_url=http://$listen
key_prefix=${SEATGATE_BENCH_KEY_PREFIX:-sgbench}
database=${SEATGATE_BENCH_DATABASE:-seatgate_bench}
pgbench_database=${database}_pgbench
amqp_namespace=${SEATGATE_BENCH_AMQP_NAMESPACE:-bench}

scripts/ensure-services.sh

echo "building release binaries (several minutes the first time)..."
cargo build --release --locked -p seatgate -p seatgate-workers -p seatgate-bench -p seatgate-lb

# The stadium: a second API and the lb on the next two ports of the same host.
host=${listen%:*}
port=${listen##*:}
listen2=$host:$((port + 1))
lb_listen=$host:$((port + 2))
bench_scenario=$scenario
bench_defaults=()
if [ "$scenario" = stadium ]; then
  bench_scenario=sellout
  bench_defaults=(--users 50000 --rows 100 --seats-per-row 200 --categories 3 --best-available-percent 98 --active-users 4000)
fi

addresses=("$listen")
[ "$scenario" = stadium ] && addresses+=("$listen2" "$lb_listen")
for address in "${addresses[@]}"; do
  if (exec 3<>"/dev/tcp/${address%:*}/${address##*:}") 2>/dev/null; then
    echo "error: something already listens on $address; stop it first" >&2
    exit 1
  fi
done

# A clean database for every run; FORCE drops connections a crashed earlier run left behind.
psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q -c "drop database if exists $database with (force)"

export SEATGATE_ADMIN_EMAIL="${SEATGATE_ADMIN_EMAIL:-admin@seatgate.local}"
export SEATGATE_ADMIN_PASSWORD="${SEATGATE_ADMIN_PASSWORD:-admin-password}"
# A throw-away instance: the placeholder admin password above is accepted. Every simulated user
# comes from this one machine, so the per-client-IP auth throttle is lifted (the flood scenario
# sets its own, see docs/BENCHMARKS.md).
export SEATGATE_DEMO=1
export SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE="${SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE:-1000000}"
export SEATGATE_SSE_MAX_PER_IP="${SEATGATE_SSE_MAX_PER_IP:-1000000}"
# The settings of the API, and of the workers and `seatgate check-invariants` (sellout), which
# must see the same database, Redis prefix, AMQP names and JWT secret. Exported, so the bench
# gets them too. RUST_BACKTRACE is unset as in the Dockerfile and compose file: with it, anyhow
# captures a backtrace for every error and symbolises it when the error is logged, which costs
# milliseconds of a worker thread per logged error and distorts the tail under load.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export SEATGATE_LISTEN=$listen
export SEATGATE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$database
export SEATGATE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# One ticket key for every process of the run: a ticket signed by one API verifies on another.
export SEATGATE_TICKET_SIGNING_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SEATGATE_REDIS_KEY_PREFIX=$key_prefix
export SEATGATE_AMQP_NAMESPACE=$amqp_namespace
export SEATGATE_LOG_FORMAT=json
# SEATGATE_BENCH_RUST_LOG overrides the log filter, e.g. "warn,sqlx::query=debug" to count
# the SQL statements of a run (each one is a log line; it costs CPU, so not for timed runs).
export RUST_LOG=${SEATGATE_BENCH_RUST_LOG:-warn}

mkdir -p target/bench
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="target/bench/api-$scenario-$stamp.log"
workers_log="target/bench/workers-$scenario-$stamp.log"
api_pid=
api2_pid=
lb_pid=
workers_pid=

# RabbitMQ queues of the bench namespace (names end in ".bench"): what is left in them is
# printed, then they are deleted, so a run never starts with an earlier run's messages.
amqp_cleanup() {
  command -v rabbitmqctl >/dev/null 2>&1 || return 0
  local queues
  queues=$(timeout 60 rabbitmqctl -q list_queues name messages </dev/null 2>/dev/null |
    awk -v ns=".$amqp_namespace" 'substr($1, length($1) - length(ns) + 1) == ns') || return 0
  [ -n "$queues" ] || return 0
  echo "RabbitMQ queues of namespace '$amqp_namespace' (name, messages left), now deleted:"
  echo "$queues" | sed 's/^/  /'
  echo "$queues" | while read -r queue _; do
    # </dev/null: rabbitmqctl reads stdin, and would eat the rest of this loop's input.
    timeout 60 rabbitmqctl -q delete_queue "$queue" </dev/null >/dev/null 2>&1 || true
  done
}

redis_cleanup() {
  # Only this run's API keys: the prefix is the bench's own.
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$key_prefix:*" 2>/dev/null |
    xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
}

# SIGTERM, then SIGKILL after 15 s. The API drains for up to SEATGATE_SHUTDOWN_TIMEOUT_SECS;
# the workers finish the tasks they hold.
stop_pid() {
  local pid=$1 name=$2
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "warning: the $name did not stop within 15 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
}

stop_api() {
  stop_pid "$lb_pid" lb
  lb_pid=
  stop_pid "$workers_pid" workers
  workers_pid=
  stop_pid "$api2_pid" "second API"
  api2_pid=
  stop_pid "$api_pid" API
  api_pid=
  redis_cleanup
  amqp_cleanup
  if [ "$scenario" = booking ]; then
    psql -h 127.0.0.1 -U postgres -q -c "drop database if exists $pgbench_database with (force)" 2>/dev/null || true
  fi
}
trap stop_api EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

amqp_cleanup
if [ "$scenario" = booking ]; then
  # The pgbench side's scratch database: the same schema, from the same migrations.
  psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q -c "drop database if exists $pgbench_database with (force)"
  SEATGATE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$pgbench_database target/release/seatgate migrate
fi
if [ "$scenario" = sellout ] || [ "$scenario" = watchers ] || [ "$scenario" = stadium ]; then
  # 5,000 users are 5,000 connections on each side.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

# Waits (60 s at most) until $2/health/ready answers 200, while process $1 lives; $3 is its log.
wait_ready() {
  local pid=$1 url=$2 log=$3
  for _ in $(seq 1 240); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: the process serving $url exited during start-up; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/health/ready")" = 200 ]; then
      return 0
    fi
    sleep 0.25
  done
  echo "error: $url/health/ready did not answer 200 within 60 s; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

echo "starting the API on $api_url (log: $log)"
target/release/seatgate serve >"$log" 2>&1 &
api_pid=$!
wait_ready "$api_pid" "$api_url" "$log"
bench_api=$api_url
if [ "$scenario" = stadium ]; then
  # After the first is ready: it applied the migrations and made the admin.
  log2="target/bench/api2-$scenario-$stamp.log"
  lb_log="target/bench/lb-$scenario-$stamp.log"
  echo "starting the second API on http://$listen2 (log: $log2)"
  SEATGATE_LISTEN=$listen2 target/release/seatgate serve >"$log2" 2>&1 &
  api2_pid=$!
  wait_ready "$api2_pid" "http://$listen2" "$log2"
  echo "starting seatgate-lb on http://$lb_listen in front of both (log: $lb_log)"
  SEATGATE_LB_LISTEN=$lb_listen SEATGATE_LB_UPSTREAMS="$api_url,http://$listen2" SEATGATE_LB_ADMIN_LISTEN=off \
    SEATGATE_LB_WORKER_THREADS=2 SEATGATE_LB_MAX_CONNECTIONS=16000 target/release/seatgate-lb >"$lb_log" 2>&1 &
  lb_pid=$!
  wait_ready "$lb_pid" "http://$lb_listen" "$lb_log"
  bench_api=http://$lb_listen
fi

if [ "$with_workers" = 1 ]; then
  echo "starting seatgate-workers all (log: $workers_log)"
  target/release/seatgate-workers all >"$workers_log" 2>&1 &
  workers_pid=$!
  sleep 2
  if ! kill -0 "$workers_pid" 2>/dev/null; then
    echo "error: the workers exited during start-up; last lines of $workers_log:" >&2
    tail -n 20 "$workers_log" >&2
    exit 1
  fi
fi

echo "API ready; running scenario '$scenario'"
# The bench's --api default is this address; the admin comes from the variables above.
status=0
# The watchers scenario reads the API's memory from /proc/<pid>/status; every scenario takes
# the API's address from SEATGATE_BENCH_API.
export SEATGATE_BENCH_API_PID=$api_pid
export SEATGATE_BENCH_API=$bench_api
target/release/seatgate-bench "$bench_scenario" "${bench_defaults[@]}" "$@" || status=$?
for api_log in "$log" ${log2:+"$log2"}; do
  warnings=$(grep -c '"level":"WARN"' "$api_log" || true)
  errors=$(grep -c '"level":"ERROR"' "$api_log" || true)
  echo "API log: $api_log ($errors error lines, $warnings warning lines)"
done
if [ "$with_workers" = 1 ]; then
  warnings=$(grep -c '"level":"WARN"' "$workers_log" || true)
  errors=$(grep -c '"level":"ERROR"' "$workers_log" || true)
  echo "workers log: $workers_log ($errors error lines, $warnings warning lines)"
fi
exit $status
