# Sourced (not run) by scripts that need a seatgate of their own for a while: scripts/fuzz.sh and
# the walk-through step of scripts/test.sh.
#
#   source scripts/lib/throwaway-api.sh
#   throwaway_api_start NAME [--seed-demo]
#
# builds target/debug/seatgate if it is stale, then runs `seatgate all-in-one` (API, workers and
# sweeper) on a free port against a database of its own (seatgate_<run>, created here), its own
# Redis key prefix and AMQP namespace (queues that expire when unused), with the admin
# admin@seatgate.local / admin-password; with --seed-demo it loads the demo catalog first. It
# waits for /health/ready and sets API_URL (http://127.0.0.1:<port>) and API_LOG (its log file,
# under target/). Set extra SEATGATE_* variables before calling it to change the server's settings.
# On exit (normal, error or signal) a trap stops the server and drops its database and Redis keys;
# call throwaway_api_stop yourself only to stop it earlier. The caller must not set its own
# EXIT trap.

throwaway_api_pid=""
throwaway_api_run=""

throwaway_api_stop() {
  if [ -n "$throwaway_api_pid" ]; then
    kill -TERM "$throwaway_api_pid" 2>/dev/null || true
    wait "$throwaway_api_pid" 2>/dev/null || true
    throwaway_api_pid=""
  fi
  if [ -n "$throwaway_api_run" ]; then
    psql -q -h 127.0.0.1 -U postgres -c "drop database if exists seatgate_$throwaway_api_run with (force)" \
      >/dev/null 2>&1 || true
    if command -v redis-cli >/dev/null 2>&1; then
      redis-cli -h 127.0.0.1 --scan --pattern "$throwaway_api_run:*" \
        | xargs -r -d '\n' redis-cli -h 127.0.0.1 unlink >/dev/null 2>&1 || true
    fi
    throwaway_api_run=""
  fi
}

throwaway_api_start() {
  local name=$1 seed=${2:-}
  cargo build --quiet --locked -p seatgate --bin seatgate
  throwaway_api_run="$name$(date +%s)$$"
  trap throwaway_api_stop EXIT
  export SEATGATE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/seatgate_$throwaway_api_run"
  export SEATGATE_JWT_SECRET="${SEATGATE_JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  # A throw-away demo: the placeholder admin password is accepted only with SEATGATE_DEMO=1.
  export SEATGATE_ADMIN_EMAIL="admin@seatgate.local" SEATGATE_ADMIN_PASSWORD="admin-password" SEATGATE_DEMO=1
  export SEATGATE_REDIS_KEY_PREFIX="$throwaway_api_run" SEATGATE_AMQP_NAMESPACE="$throwaway_api_run"
  export SEATGATE_AMQP_QUEUE_EXPIRES_MS=600000
  API_LOG="target/$throwaway_api_run.log"
  : >"$API_LOG"
  if [ "$seed" = "--seed-demo" ]; then
    target/debug/seatgate seed-demo >>"$API_LOG" 2>&1 || { echo "error: seed-demo failed; see $API_LOG" >&2; return 1; }
  fi
  local attempt
  for attempt in 1 2 3 4 5; do
    throwaway_api_launch && return 0
    # Lost the port to another process between the check and the bind: try another one.
    grep -q 'in use' "$API_LOG" || return 1
  done
  return 1
}

# A port nobody listens on (checked with bash's /dev/tcp; no other tool needed).
throwaway_api_free_port() {
  local port
  while true; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

throwaway_api_launch() {
  local port i
  port=$(throwaway_api_free_port)
  SEATGATE_LISTEN="127.0.0.1:$port" target/debug/seatgate all-in-one >>"$API_LOG" 2>&1 &
  throwaway_api_pid=$!
  for ((i = 0; i < 240; i++)); do
    if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then
      API_URL="http://127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$throwaway_api_pid" 2>/dev/null; then
      wait "$throwaway_api_pid" 2>/dev/null || true
      throwaway_api_pid=""
      echo "error: seatgate all-in-one exited during start-up; see $API_LOG" >&2
      return 1
    fi
    sleep 0.25
  done
  echo "error: seatgate did not become ready within 60 s; see $API_LOG" >&2
  return 1
}
