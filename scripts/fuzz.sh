#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (AddressSanitizer + UBSan) and runs
# each for a bounded time: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...].
# Seed corpora are made in a temporary folder from the fixtures; findings are
# left in that folder and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
build=${SLM_FUZZ_BUILD:-build-fuzz}
fixtures=${SLM_FIXTURES:-$PWD/../shared/fixtures}
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSLM_FUZZ=ON -DSLM_BUILD_TESTS=OFF >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
work=$(mktemp -d)
status=0
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  case "$t" in
    fuzz_gguf) find "$fixtures/models" -name '*.gguf' -size -2M -exec cp {} "$corpus/" \; ;;
    fuzz_template) cp "$fixtures"/templates/src/*.jinja "$corpus/" 2>/dev/null || true ;;
    fuzz_tokenizer*) cp "$fixtures"/tokenizer/cases/*.inp "$corpus/" 2>/dev/null || true ;;
  esac
  echo "== $t for ${seconds}s"
  if ! SLM_FIXTURES="$fixtures" "$build/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb=4096 \
      -artifact_prefix="$work/$t-" "$corpus" >"$work/$t.log" 2>&1; then
    echo "$t FOUND A PROBLEM: see $work/$t.log"
    tail -n 40 "$work/$t.log"
    status=1
  else
    grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$work/$t.log" | tail -n 1 || true
  fi
done
exit $status
