#!/usr/bin/env bash
# Runs a load scenario of seatgate-bench against ONE fresh release API instance on this machine.
#
#   scripts/bench.sh holds [extra seatgate-bench args, e.g. --users 32 --rounds 5]
#
# Checks (and starts) PostgreSQL, Redis and RabbitMQ, builds the release binaries, drops and
# recreates the database seatgate_bench, starts `seatgate serve` on 127.0.0.1:8090 (logs in
# target/bench/), waits for /health/ready, runs the scenario, and always stops the API on exit.
# Redis keys of the bench API live under the prefix "sgbench" and are deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/bench.sh <scenario> [seatgate-bench args]   scenarios: holds" >&2
  exit 2
}
[ $# -ge 1 ] || usage
scenario=$1
shift
case "$scenario" in
  holds) ;;
  -h | --help) usage ;;
  *) echo "error: unknown scenario '$scenario'" >&2; usage ;;
esac

listen=127.0.0.1:8090
api_url=http://$listen
key_prefix=sgbench
database=seatgate_bench

scripts/ensure-services.sh

echo "building release binaries (several minutes the first time)..."
cargo build --release --locked -p seatgate -p seatgate-bench

if (exec 3<>"/dev/tcp/127.0.0.1/8090") 2>/dev/null; then
  echo "error: something already listens on $listen; stop it first" >&2
  exit 1
fi

# A clean database for every run; FORCE drops connections a crashed earlier run left behind.
psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q -c "drop database if exists $database with (force)"

export SEATGATE_ADMIN_EMAIL="${SEATGATE_ADMIN_EMAIL:-admin@seatgate.local}"
export SEATGATE_ADMIN_PASSWORD="${SEATGATE_ADMIN_PASSWORD:-admin-password}"

mkdir -p target/bench
log="target/bench/api-$scenario-$(date -u +%Y%m%dT%H%M%SZ).log"
api_pid=

redis_cleanup() {
  # Only this run's API keys: the prefix is the bench's own.
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$key_prefix:*" 2>/dev/null |
    xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1 || true
}

stop_api() {
  if [ -n "$api_pid" ] && kill -0 "$api_pid" 2>/dev/null; then
    kill -TERM "$api_pid" 2>/dev/null || true
    # The API drains for up to SEATGATE_SHUTDOWN_TIMEOUT_SECS; give it a little more, then force.
    for _ in $(seq 1 60); do
      kill -0 "$api_pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$api_pid" 2>/dev/null; then
      echo "warning: the API did not stop within 15 s; killing it" >&2
      kill -KILL "$api_pid" 2>/dev/null || true
    fi
    wait "$api_pid" 2>/dev/null || true
  fi
  api_pid=
  redis_cleanup
}
trap stop_api EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "starting the API on $api_url (log: $log)"
# RUST_BACKTRACE is unset for the API as in the Dockerfile and compose file: with it, anyhow
# captures a backtrace for every error and symbolises it when the error is logged, which costs
# milliseconds of a worker thread per logged error and distorts the tail under load.
env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
  SEATGATE_LISTEN=$listen \
  SEATGATE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$database \
  SEATGATE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  SEATGATE_REDIS_KEY_PREFIX=$key_prefix \
  SEATGATE_LOG_FORMAT=json \
  RUST_LOG=warn \
  target/release/seatgate serve >"$log" 2>&1 &
api_pid=$!

ready=0
for _ in $(seq 1 240); do # 60 s
  if ! kill -0 "$api_pid" 2>/dev/null; then
    echo "error: the API exited during start-up; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$api_url/health/ready")" = 200 ]; then
    ready=1
    break
  fi
  sleep 0.25
done
if [ $ready -ne 1 ]; then
  echo "error: $api_url/health/ready did not answer 200 within 60 s; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi

echo "API ready; running scenario '$scenario'"
# The bench's --api default is this address; the admin comes from the variables above.
target/release/seatgate-bench "$scenario" "$@"
warnings=$(grep -c '"level":"WARN"' "$log" || true)
errors=$(grep -c '"level":"ERROR"' "$log" || true)
echo "API log: $log ($errors error lines, $warnings warning lines)"
