#!/usr/bin/env bash
# Cross-compiles the dependency-free core for aarch64 (Debian's
# g++-aarch64-linux-gnu) and runs its kernel, ops, GGUF and logits tests under
# qemu-aarch64: the NEON kernels and float ops against the scalar reference,
# and the forward pass against llama.cpp's logits.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-aarch64}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLM_WERROR=ON -DSLM_CORE_ONLY=ON \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
  -DCMAKE_CROSSCOMPILING_EMULATOR="qemu-aarch64;-L;/usr/aarch64-linux-gnu" >/dev/null
tests=(test_gguf test_kernels test_ops test_model_reference test_model_synthetic)
cmake --build "$build" -j "$(nproc)" --target "${tests[@]}" slm
export SLM_FIXTURES=${SLM_FIXTURES:-$PWD/../shared/fixtures}
status=0
for t in "${tests[@]}"; do
  bin=$(find "$build/tests" -name "$t" -type f -perm -u+x | head -n 1)
  echo "== aarch64: $t"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" --gtest_brief=1 || status=1
done
# The CLI itself runs on aarch64.
qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/src/cli/slm" info --model "$SLM_FIXTURES/models/stories260K.gguf" --no-tensors >/dev/null || status=1
exit $status
