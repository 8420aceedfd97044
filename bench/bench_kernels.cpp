// Micro-benchmark of kernels::matmul per weight type, plain layout and
// load-time packed layout (kernels::PackedMatrix), at 1 and 2 threads:
//   decode  one token against a ~256 MB matrix (far larger than the caches):
//           GB/s of weights streamed (the bandwidth ceiling is the target)
//   prompt  `tokens` tokens against a 4096 x 4096 matrix: GMAC/s and the
//           tokens/s that rate would give on a 0.5B-parameter model; with
//           "big", against the decode matrix instead: a batched decode step
//           (16 sequences: tokens 16), whose weights come from memory
// One thread is timed by its CPU time (other processes on a shared machine
// do not count); two threads by wall time, best of the repetitions.
//   shapes  (first argument "shapes") the matmuls of a Qwen2.5-0.5B prompt
//           step at 128 and 512 tokens, each fused group as the model calls
//           it: GMAC/s per thread and the share of the step's matmul time
// Usage: bench_kernels [tokens=64] [type,type,...] [isa|-] [big]
//        bench_kernels shapes [type,...=Q4_0,Q8_0] [isa|-] [shape,...|-] [tokens,...=128,512]
//                      [threads,...=1,2]
//        (shapes: qkv, o, gate_up, down; "-" keeps the default)
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

// One matmul call of a model step: matrices [rows][cols] sharing one input
// (a fused group: Q, K, V or gate, up).
struct ShapeCall {
  const char* name;
  int64_t cols;
  std::vector<int64_t> rows;
};

// Qwen2.5-0.5B: n_embd 896, 14 query / 2 key-value heads of 64, n_ff 4864.
// The output head runs for the last token only (not a prompt matmul).
void bench_shapes(DType t, ThreadPool& pool, const std::string& only_shapes,
                  const std::vector<int64_t>& token_counts) {
  const ShapeCall calls[] = {{"qkv", 896, {896, 128, 128}},
                             {"o", 896, {896}},
                             {"gate_up", 896, {4864, 4864}},
                             {"down", 4864, {896}}};
  for (int64_t tokens : token_counts) {
    double total_s = 0, total_mac = 0;
    double secs[std::size(calls)];
    for (size_t c = 0; c < std::size(calls); ++c) {
      const ShapeCall& sc = calls[c];
      secs[c] = 0;
      if (!only_shapes.empty() &&
          only_shapes.find(std::string(",").append(sc.name).append(",")) == std::string::npos)
        continue;
      // K-quants hold no 896-wide rows (blocks of 256): the model keeps such
      // matrices in another type, and an empty matrix would time nothing.
      if (!row_fits(t, sc.cols)) {
        std::printf("%-7s %2dt m=%-4lld %-8s %6lld columns: not whole blocks, skipped\n",
                    std::string(dtype_name(t)).c_str(), pool.size(), static_cast<long long>(tokens),
                    sc.name, static_cast<long long>(sc.cols));
        continue;
      }
      std::vector<Matrix> ms;
      for (int64_t r : sc.rows) ms.push_back(make_matrix(t, r, sc.cols));
      std::mt19937 rng(2);
      std::normal_distribution<float> dist(0, 1);
      std::vector<float> x(static_cast<size_t>(sc.cols * tokens));
      for (float& f : x) f = dist(rng);
      std::vector<std::vector<float>> ys;
      std::vector<kernels::PackedOut> outs;
      for (const Matrix& m : ms) ys.emplace_back(static_cast<size_t>(m.rows * tokens));
      for (size_t i = 0; i < ms.size(); ++i) outs.push_back({&ms[i].packed, ys[i].data()});
      std::vector<uint8_t> scratch;
      auto call = [&] { kernels::matmul(outs, x.data(), tokens, pool, scratch); };
      call();
      double best = 1e30, spent = 0;
      int n = 0;
      while ((spent < 0.5 || n < 5) && n < 2000) {
        const double t0 = now(pool.size() == 1);
        call();
        const double dt = now(pool.size() == 1) - t0;
        best = std::min(best, dt);
        spent += dt;
        ++n;
      }
      double macs = 0;
      for (int64_t r : sc.rows) macs += static_cast<double>(r * sc.cols * tokens);
      secs[c] = best;
      total_s += secs[c];
      total_mac += macs;
      std::printf(
          "%-7s %2dt m=%-4lld %-8s %6lld x %-16s %8.1f us %9.1f GMAC/s/thread\n",
          std::string(dtype_name(t)).c_str(), pool.size(), static_cast<long long>(tokens), sc.name,
          static_cast<long long>(sc.cols),
          [&] {
            std::string r;
            for (int64_t v : sc.rows) r.append(r.empty() ? "" : "+").append(std::to_string(v));
            return r;
          }()
              .c_str(),
          best * 1e6, macs / best / 1e9 / pool.size());
    }
    bool every_shape = only_shapes.empty();
    for (const ShapeCall& sc : calls) every_shape = every_shape && row_fits(t, sc.cols);
    if (!every_shape) continue;  // the layer line needs every shape
    std::printf("%-7s %2dt m=%-4lld %-8s %-25s %8.1f us %9.1f GMAC/s/thread (",
                std::string(dtype_name(t)).c_str(), pool.size(), static_cast<long long>(tokens),
                "layer", "", total_s * 1e6, total_mac / total_s / 1e9 / pool.size());
    for (size_t c = 0; c < std::size(calls); ++c)
      std::printf("%s%s %.0f%%", c ? ", " : "", calls[c].name, 100 * secs[c] / total_s);
    std::printf(")\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // "--help" (or any first argument that is neither "shapes" nor a token
  // count) prints the usage instead of timing a 0-token prompt.
  if (argc > 1 && std::string(argv[1]) != "shapes" && std::atoll(argv[1]) <= 0) {
    std::fprintf(stderr,
                 "usage: bench_kernels [tokens=64] [type,type,...] [isa]\n"
                 "       bench_kernels shapes [type,...=Q4_0,Q8_0] [isa|-] [shape,...|-] "
                 "[tokens,...=128,512] [threads,...=1,2]\n");
    return std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ? 0 : 2;
  }
  if (argc > 1 && std::string(argv[1]) == "shapes") {
    auto arg = [&](int i, const char* def) {
      return std::string(argc > i && std::string(argv[i]) != "-" ? argv[i] : def);
    };
    auto list = [](const std::string& s) {  // "a,b" -> ",a,b,"
      return std::string(",").append(s).append(",");
    };
    auto numbers = [](const std::string& s) {
      std::vector<int64_t> v;
      for (size_t i = 0; i < s.size();
           i = s.find(',', i) == std::string::npos ? s.size() : s.find(',', i) + 1)
        v.push_back(std::max<int64_t>(1, std::atoll(s.c_str() + i)));
      return v;
    };
    const std::string only = list(arg(2, "Q4_0,Q8_0")), isa_arg = arg(3, "");
    const std::string only_shapes = argc > 4 && std::string(argv[4]) != "-" ? list(argv[4]) : "";
    const std::vector<int64_t> token_counts = numbers(arg(5, "128,512"));
    const std::vector<int64_t> thread_counts = numbers(arg(6, "1,2"));
    for (kernels::Isa isa : kernels::available_isas())
      if (kernels::isa_name(isa) == isa_arg) kernels::set_active_isa(isa);
    std::printf("isa %s; Qwen2.5-0.5B prompt matmuls (one layer), best of repetitions\n",
                std::string(kernels::isa_detail(kernels::active_isa())).c_str());
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q5_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      std::string key(",");
      key.append(dtype_name(t)).append(",");
      if (only.find(key) == std::string::npos) continue;
      for (int64_t n : thread_counts) {
        ThreadPool pool(static_cast<int>(n));
        bench_shapes(t, pool, only_shapes, token_counts);
      }
    }
    return 0;
  }
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 64;
  // Type filter as ",A,B," (built with append: GCC 12 warns falsely on
  // chained std::string operator+ here).
  std::string only;
  if (argc > 2) only.append(",").append(argv[2]).append(",");
  if (argc > 3) {
    for (kernels::Isa isa : kernels::available_isas())
      if (kernels::isa_name(isa) == std::string(argv[3])) kernels::set_active_isa(isa);
  }
  const bool big_prompt = argc > 4 && std::string(argv[4]) == "big";
  const DType types[] = {DType::Q4_0,   DType::Q8_0, DType::Q4_K, DType::Q6_K,
                         DType::Q5_0,   DType::F16,  DType::Q5_K, DType::Q4_1,
                         DType::IQ4_NL, DType::Q3_K, DType::Q2_K, DType::BF16, DType::Q5_1};
  std::printf(
      "isa %s; decode: GB/s of weights, 1 token x ~256 MB matrix; prompt: %lld tokens x "
      "%s,\n"
      "GMAC/s (tok/s = that rate over a 0.5e9-MAC/token model)\n",
      std::string(kernels::isa_detail(kernels::active_isa())).c_str(),
      static_cast<long long>(tokens), big_prompt ? "the decode matrix" : "4096x4096");
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
        const Matrix& m = big_prompt ? big : square;
        pp[p] = static_cast<double>(m.rows) * static_cast<double>(cols) *
                static_cast<double>(tokens) / time_call(m, packed, tokens, pools[p], 1.0) / 1e9;
      }
      std::printf("%-7s %-7s %9.2f %9.2f %9.1f %9.1f %14.0f %14.0f\n",
                  std::string(dtype_name(t)).c_str(), packed ? "packed" : "plain", dec[0], dec[1],
                  pp[0], pp[1], pp[0] * 2, pp[1] * 2);
    }
  }
  return 0;
}
