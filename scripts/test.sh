#!/usr/bin/env bash
# The whole test suite against real PostgreSQL, Redis and RabbitMQ (started here if down):
# unit and integration tests (each test makes its own database, Redis key prefix and AMQP
# names, so tests run in parallel), then a bounded schemathesis run over the OpenAPI document
# (scripts/fuzz.sh; skip it with FUZZ=0), then the browser end-to-end test of the web front end in
# headless Chromium (scripts/browser-test.sh, which installs chromium and its npm packages if
# missing; skip it with BROWSER=0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo test --workspace --all-targets --locked "$@"
if [ "${FUZZ:-1}" != "0" ]; then
  scripts/fuzz.sh
fi
if [ "${BROWSER:-1}" != "0" ]; then
  scripts/browser-test.sh
fi
