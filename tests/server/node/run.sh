#!/usr/bin/env bash
# Runs one end-to-end test file of `slm serve` under node --test (CTest calls
# this; see ../CMakeLists.txt). "--setup" only installs the npm packages.
# Env: SLM_BIN (the slm executable), SLM_FIXTURES (the fixtures folder).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The packages come from package-lock.json (npm ci) when a dependency of package.json is missing from
# node_modules (a checkout that predates one, such as zod, gets it too).
missing=0
for dep in $(node -e 'console.log(Object.keys(require(process.argv[1]).dependencies).join(" "))' "$here/package.json"); do
  [ -d "$here/node_modules/$dep" ] || missing=1
done
if [ "$missing" = 1 ]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
[ "${1:-}" = "--setup" ] && exit 0
name="$1"
exec node --test --test-reporter=spec "$here/$name.test.mjs"
