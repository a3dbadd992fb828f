#!/usr/bin/env bash
# Browser end-to-end test of the web front end (tests/browser/): Debian's chromium driven by
# playwright-core (which downloads no browser), run by node's built-in test runner. Installs
# chromium with apt and the npm packages (npm ci, from the committed package-lock.json) when
# missing, builds target/debug/seatgate, and runs the test; the test starts and stops its own
# seatgate on a free port with its own database (each test file its own). Screenshots land in
# target/browser-artifacts/.
#
# Exits 0 with a SKIP message only when chromium is absent and cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "chromium: not found at $chromium, installing it with apt"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium || true
  fi
fi
if [ ! -x "$chromium" ]; then
  echo "SKIP: chromium is not installed and could not be installed (apt-get install chromium); browser test not run"
  exit 0
fi

for tool in node npm cargo psql redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed (node and npm: apt-get install nodejs npm)" >&2; exit 1; }
done
scripts/ensure-services.sh

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
cargo build --locked --bin seatgate
cd tests/browser
CHROMIUM_PATH="$chromium" SEATGATE_BIN="$PWD/../../target/debug/seatgate" node --test --test-concurrency=1 ./*.test.mjs
