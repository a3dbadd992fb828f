#!/usr/bin/env bash
# The hostile-input suite: the JWT attack set, the authorization matrix of every endpoint,
# limits (oversized bodies, long and control-character strings, huge pages, login brute force)
# and malformed-input tests, then property-based fuzzing of the whole API from its OpenAPI
# document (scripts/fuzz.sh; FUZZ_EXAMPLES=200 for a longer run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh >/dev/null
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo test --locked -p seatgate --test api -- security:: problems:: auth::
scripts/fuzz.sh
