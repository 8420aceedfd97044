// Micro-benchmark of kernels::matmul for one token (decode) per type and ISA:
// weight bytes streamed per second, from memory (a matrix far larger than the
// caches) and from cache (a small matrix, compute-bound). Not a test; build by
// hand, e.g.
//   g++ -O2 -std=c++20 -Isrc bench/bench_kernels.cpp build/src/kernels/libslm_kernels.a
//       build/src/base/libslm_base.a -lpthread -o bench_kernels
// Usage: bench_kernels [threads] [tokens] [type,type,...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/thread_pool.h"
#include "kernels/kernels.h"

using namespace slm;

namespace {

double seconds_per_call(DType t, int64_t rows, int64_t cols, int64_t tokens, ThreadPool& pool,
                        double budget_s) {
  std::vector<float> wf(static_cast<size_t>(cols));
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0, 1);
  for (float& f : wf) f = dist(rng);
  const size_t rb = static_cast<size_t>(row_bytes(t, cols));
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  std::vector<uint8_t> row(rb);
  kernels::traits(kernels::Isa::kScalar, t).quantize_row(wf.data(), row.data(), cols);
  for (int64_t r = 0; r < rows; ++r)
    std::copy(row.begin(), row.end(), w.begin() + static_cast<long>(r * rb));
  std::vector<float> x(static_cast<size_t>(cols * tokens)), y(static_cast<size_t>(rows * tokens));
  for (float& f : x) f = dist(rng);
  std::vector<uint8_t> scratch;
  kernels::matmul(t, w.data(), rows, cols, x.data(), tokens, y.data(), pool, scratch);  // warm up
  // One thread: CPU time of this thread, so other processes on a shared
  // machine do not count; more threads: wall time.
  auto now = [&] {
    if (pool.size() > 1)
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  int calls = 0;
  const double start = now();
  double elapsed = 0;
  while (elapsed < budget_s) {
    kernels::matmul(t, w.data(), rows, cols, x.data(), tokens, y.data(), pool, scratch);
    ++calls;
    elapsed = now() - start;
  }
  return elapsed / calls;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int64_t tokens = argc > 2 ? std::atoll(argv[2]) : 1;
  ThreadPool pool(threads);
  const DType types[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K,   DType::Q5_K,
                         DType::F16,  DType::Q4_1, DType::Q5_0, DType::IQ4_NL, DType::Q3_K,
                         DType::Q2_K, DType::BF16, DType::F32};
  std::printf(
      "threads %d, tokens %lld; GB/s of weights (memory: ~256 MB matrix; cache: 1 MB-ish)\n",
      threads, static_cast<long long>(tokens));
  std::printf("%-8s", "type");
  for (kernels::Isa isa : kernels::available_isas())
    std::printf(" %12s %12s", (std::string(kernels::isa_name(isa)) + "-mem").c_str(),
                (std::string(kernels::isa_name(isa)) + "-cache").c_str());
  std::printf("\n");
  const std::string only = argc > 3 ? std::string(",") + argv[3] + "," : "";
  for (DType t : types) {
    if (!only.empty() && only.find("," + std::string(dtype_name(t)) + ",") == std::string::npos)
      continue;
    std::printf("%-8s", std::string(dtype_name(t)).c_str());
    const int64_t cols = 4096;
    const double bytes_per_row = static_cast<double>(row_bytes(t, cols));
    const int64_t big_rows = static_cast<int64_t>(256e6 / bytes_per_row);
    const int64_t small_rows = static_cast<int64_t>(512e3 / bytes_per_row);
    for (kernels::Isa isa : kernels::available_isas()) {
      kernels::set_active_isa(isa);
      const double budget = isa == kernels::Isa::kScalar ? 0.3 : 0.6;
      const double mem = seconds_per_call(t, big_rows, cols, tokens, pool, budget);
      const double cache = seconds_per_call(t, small_rows, cols, tokens, pool, budget);
      std::printf(" %12.2f %12.2f", bytes_per_row * static_cast<double>(big_rows) / mem / 1e9,
                  bytes_per_row * static_cast<double>(small_rows) / cache / 1e9);
    }
    std::printf("\n");
  }
  return 0;
}
