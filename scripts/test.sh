#!/usr/bin/env bash
# The whole test suite against real PostgreSQL, Redis and RabbitMQ (started here if down).
# Each test makes its own database, Redis key prefix and AMQP names, so tests run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo test --workspace --all-targets --locked "$@"
