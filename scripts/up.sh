#!/usr/bin/env bash
# Starts seatgate on this machine with demo data: checks (and starts) PostgreSQL, Redis and
# RabbitMQ, builds the release binaries, migrates, loads the demo catalog, then runs the API
# with its workers in the foreground and prints where to find it. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh

echo "building release binaries (the first build takes several minutes)..."
cargo build --release --locked --workspace --bins

# A demo secret made for this run; set SEATGATE_JWT_SECRET to keep tokens valid across restarts.
export SEATGATE_JWT_SECRET="${SEATGATE_JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export SEATGATE_ADMIN_EMAIL="${SEATGATE_ADMIN_EMAIL:-admin@seatgate.local}"
export SEATGATE_ADMIN_PASSWORD="${SEATGATE_ADMIN_PASSWORD:-admin-password}"
export SEATGATE_LISTEN="${SEATGATE_LISTEN:-127.0.0.1:8080}"

bin=target/release/seatgate
$bin migrate
$bin seed-demo

cat <<MSG

  seatgate is starting on http://${SEATGATE_LISTEN}
    API docs     http://${SEATGATE_LISTEN}/docs/
    showtimes    curl http://${SEATGATE_LISTEN}/api/v1/showtimes
    health       http://${SEATGATE_LISTEN}/health/ready
    metrics      http://${SEATGATE_LISTEN}/metrics
  demo user      demo@seatgate.local / demo-password
  admin          ${SEATGATE_ADMIN_EMAIL} / ${SEATGATE_ADMIN_PASSWORD}
  Ctrl-C stops it.

MSG
exec $bin all-in-one
