#!/usr/bin/env bash
# Runs one end-to-end test file of `slm serve` under node --test (CTest calls
# this; see ../CMakeLists.txt). "--setup" only installs the npm packages from
# package-lock.json when node_modules is missing.
# Env: SLM_BIN (the slm executable), SLM_FIXTURES (the fixtures folder).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -d "$here/node_modules/openai" ] || [ ! -d "$here/node_modules/playwright-core" ]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
[ "${1:-}" = "--setup" ] && exit 0
name="$1"
exec node --test --test-reporter=spec "$here/$name.test.mjs"
