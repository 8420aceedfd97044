#!/usr/bin/env bash
# Builds slm with warnings as errors and runs every test through CTest: the
# unit, component and end-to-end tests, the aarch64 build under qemu, and the
# bounded fuzz runs (see tests/CMakeLists.txt). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SLM_TEST_BUILD:-build-test}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLM_WERROR=ON -DSLM_SLOW_TESTS=ON
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 1500
