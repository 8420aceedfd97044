// Micro-benchmark of kernels::matmul per weight type, plain layout and
// load-time packed layout (kernels::PackedMatrix), at 1 and 2 threads:
//   decode  one token against a ~256 MB matrix (far larger than the caches):
//           GB/s of weights streamed (the bandwidth ceiling is the target)
//   prompt  `tokens` tokens against a 4096 x 4096 matrix: GMAC/s and the
//           tokens/s that rate would give on a 0.5B-parameter model
// One thread is timed by its CPU time (other processes on a shared machine
// do not count); two threads by wall time, best of the repetitions.
// Usage: bench_kernels [tokens=64] [type,type,...] [isa]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/thread_pool.h"
#include "clock.h"
#include "kernels/kernels.h"

using namespace slm;

namespace {

using slm::bench::now;

struct Matrix {
  DType type;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  kernels::PackedMatrix packed;
};

Matrix make_matrix(DType t, int64_t rows, int64_t cols) {
  Matrix m{t, rows, cols, {}, {}};
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0, 1);
  // A few distinct random rows repeated: quantizing 256 MB row by row with
  // the scalar quantizers would take longer than the benchmark.
  constexpr int kDistinct = 16;
  const size_t rb = static_cast<size_t>(row_bytes(t, cols));
  std::vector<uint8_t> rows_q(rb * kDistinct);
  std::vector<float> wf(static_cast<size_t>(cols));
  for (int i = 0; i < kDistinct; ++i) {
    for (float& f : wf) f = dist(rng);
    kernels::traits(kernels::Isa::kScalar, t).quantize_row(wf.data(), rows_q.data() + i * rb, cols);
  }
  m.bytes.resize(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(rows_q.begin() + static_cast<long>((r % kDistinct) * rb), rb,
                m.bytes.begin() + static_cast<long>(r * rb));
  if (kernels::PackedMatrix::pays(t))
    m.packed = kernels::PackedMatrix::pack(t, m.bytes.data(), rows, cols);
  return m;
}

// Best seconds per call over repetitions within budget_s.
double time_call(const Matrix& m, bool packed, int64_t tokens, ThreadPool& pool, double budget_s) {
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0, 1);
  std::vector<float> x(static_cast<size_t>(m.cols * tokens)),
      y(static_cast<size_t>(m.rows * tokens));
  for (float& f : x) f = dist(rng);
  std::vector<uint8_t> scratch;
  auto call = [&] {
    if (packed)
      kernels::matmul(m.packed, x.data(), tokens, y.data(), pool, scratch);
    else
      kernels::matmul(m.type, m.bytes.data(), m.rows, m.cols, x.data(), tokens, y.data(), pool,
                      scratch);
  };
  call();  // warm up
  const bool cpu = pool.size() == 1;
  double best = 1e30, total = 0;
  int calls = 0;
  while ((total < budget_s || calls < 3) && calls < 1000) {
    const double t0 = now(cpu);
    call();
    const double dt = now(cpu) - t0;
    best = std::min(best, dt);
    total += dt;
    ++calls;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 64;
  // Type filter as ",A,B," (built with append: GCC 12 warns falsely on
  // chained std::string operator+ here).
  std::string only;
  if (argc > 2) only.append(",").append(argv[2]).append(",");
  if (argc > 3) {
    for (kernels::Isa isa : kernels::available_isas())
      if (kernels::isa_name(isa) == std::string(argv[3])) kernels::set_active_isa(isa);
  }
  const DType types[] = {DType::Q4_0,   DType::Q8_0, DType::Q4_K, DType::Q6_K,
                         DType::Q5_0,   DType::F16,  DType::Q5_K, DType::Q4_1,
                         DType::IQ4_NL, DType::Q3_K, DType::Q2_K, DType::BF16, DType::Q5_1};
  std::printf(
      "isa %s; decode: GB/s of weights, 1 token x ~256 MB matrix; prompt: %lld tokens x "
      "4096x4096,\n"
      "GMAC/s (tok/s = that rate over a 0.5e9-MAC/token model)\n",
      std::string(kernels::isa_detail(kernels::active_isa())).c_str(),
      static_cast<long long>(tokens));
  std::printf("%-7s %-7s %9s %9s %9s %9s %14s %14s\n", "type", "layout", "dec 1t", "dec 2t",
              "pp 1t", "pp 2t", "pp tok/s 1t", "pp tok/s 2t");
  ThreadPool pools[2] = {ThreadPool(1), ThreadPool(2)};
  for (DType t : types) {
    std::string key(",");
    key.append(dtype_name(t)).append(",");
    if (!only.empty() && only.find(key) == std::string::npos) continue;
    const int64_t cols = 4096;
    const double rb = static_cast<double>(row_bytes(t, cols));
    const Matrix big = make_matrix(t, static_cast<int64_t>(256e6 / rb) / 16 * 16, cols);
    const Matrix square = make_matrix(t, 4096, cols);
    for (bool packed : {false, true}) {
      if (packed && big.packed.empty()) continue;
      double dec[2], pp[2];
      for (int p = 0; p < 2; ++p) {
        dec[p] =
            rb * static_cast<double>(big.rows) / time_call(big, packed, 1, pools[p], 1.0) / 1e9;
        pp[p] = 4096.0 * 4096.0 * static_cast<double>(tokens) /
                time_call(square, packed, tokens, pools[p], 1.0) / 1e9;
      }
      std::printf("%-7s %-7s %9.2f %9.2f %9.1f %9.1f %14.0f %14.0f\n",
                  std::string(dtype_name(t)).c_str(), packed ? "packed" : "plain", dec[0], dec[1],
                  pp[0], pp[1], pp[0] * 2, pp[1] * 2);
    }
  }
  return 0;
}
