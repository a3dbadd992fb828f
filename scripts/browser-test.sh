#!/usr/bin/env bash
# Browser end-to-end test of the web front end (tests/browser/): Debian's chromium driven by
# playwright-core (which downloads no browser), run by node's built-in test runner. Installs
# chromium with apt when missing (the package and its dependencies only: --no-install-recommends,
# about 25 packages on Debian 12) and the npm packages (npm ci into tests/browser/node_modules,
# from the committed package-lock.json) when missing, builds target/debug/seatgate, and runs the
# tests; each test file starts and stops its own seatgate on a free port with its own database.
# Screenshots land in target/browser-artifacts/.
#
# Exits 0 with a SKIP message only when chromium is absent and cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  source scripts/lib/apt-install.sh
  apt_install_missing chromium chromium || true
fi
if [ ! -x "$chromium" ]; then
  echo "SKIP: chromium is not installed and could not be installed (apt-get install --no-install-recommends chromium); browser test not run"
  exit 0
fi

for tool in node npm cargo psql redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed (node and npm: apt-get install --no-install-recommends nodejs npm)" >&2; exit 1; }
done
scripts/ensure-services.sh

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
cargo build --locked --bin seatgate
cd tests/browser
CHROMIUM_PATH="$chromium" SEATGATE_BIN="$PWD/../../target/debug/seatgate" node --test --test-concurrency=1 ./*.test.mjs
