#!/usr/bin/env bash
# Property-based fuzzing of the whole HTTP API from its own /openapi.json with schemathesis,
# once with an admin token and once with a user token. Fails on any 5xx, any response that
# does not match the schema, any undocumented status, and any schema-violating request that is
# accepted. Requests the schema allows but the rules refuse (a movie id that does not exist, a
# start in the past, duplicate row labels) are legitimate 422s, so that one check is excluded.
# The live seat map's event stream is left out: a 200 there never ends (tests/api/live.rs
# covers it).
#   scripts/fuzz.sh                 bounded run (CI): 25 examples per operation
#   FUZZ_EXAMPLES=200 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh >/dev/null

examples="${FUZZ_EXAMPLES:-25}"
venv="target/fuzz-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis into $venv (PyPI)..."
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4,<5"
fi
cargo build --quiet --locked -p seatgate

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
run="fuzz$(date +%s)$$"
export SEATGATE_LISTEN="127.0.0.1:$port"
export SEATGATE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/seatgate_$run"
export SEATGATE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SEATGATE_ADMIN_EMAIL="admin@seatgate.local" SEATGATE_ADMIN_PASSWORD="admin-password"
export SEATGATE_REDIS_KEY_PREFIX="$run" SEATGATE_AMQP_NAMESPACE="$run" SEATGATE_AMQP_QUEUE_EXPIRES_MS=600000
export SEATGATE_LOGIN_ATTEMPTS_PER_MINUTE=1000000 SEATGATE_LOG_FORMAT=json RUST_LOG=warn
# A throw-away instance (placeholder admin password); every fuzz request comes from one IP.
export SEATGATE_DEMO=1 SEATGATE_AUTH_ATTEMPTS_PER_IP_PER_MINUTE=1000000
log="target/fuzz-$run.log"

api_pid=""
cleanup() {
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql -q -h 127.0.0.1 -U postgres -c "drop database if exists seatgate_$run" >/dev/null 2>&1 || true
}
trap cleanup EXIT

target/debug/seatgate seed-demo >"$log" 2>&1
target/debug/seatgate all-in-one >>"$log" 2>&1 &
api_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://$SEATGATE_LISTEN/health/ready" >/dev/null 2>&1 && break
  sleep 0.25
done
token() {
  curl -fsS "http://$SEATGATE_LISTEN/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
admin=$(token admin@seatgate.local admin-password)
user=$(token demo@seatgate.local demo-password)

status=0
for who in admin user; do
  tok=$admin; [ "$who" = user ] && tok=$user
  echo "== schemathesis as $who ($examples examples per operation)"
  "$venv/bin/schemathesis" run "http://$SEATGATE_LISTEN/openapi.json" \
    -H "Authorization: Bearer $tok" \
    --exclude-path '/api/v1/showtimes/{id}/seats/events' \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$examples" --workers 2 --no-color \
    || status=1
done
if grep -q "request failed" "$log"; then echo "the API logged internal errors (500): see $log"; status=1; fi
exit $status
