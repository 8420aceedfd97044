// Input-sparse decoding's column products (kernels::matvec_columns) on one
// model's fused groups, against the dense packed kernels on the same step:
// each group (q/k/v, o, gate/up, down) as separate column copies (one per
// matrix, fused in one pass over the pool) and as one stacked copy (the
// matrices' outputs in one column: a wider matrix to the kernel). Several
// layers' copies, called in turn, so that the weights come from memory as
// in a model's step. Kept inputs: a random share of the columns, fixed per
// call. Times: best of REPS rounds of every layer, the variants alternating
// within each round; one thread by its CPU time, two by wall time.
// gate/up also runs as CATS decoding does (forward.cpp ffn_dense_up_rows):
// gate alone (its column copy over the kept inputs, or dense), then up at a
// random share `kept` of its rows from its row copy (kernels::matvec_rows).
// Usage: bench_columns [shape=tinyllama|qwen|qwen-head] [type=Q4_0] [kept=0.5] [threads=1]
//                      [reps=20] [MB=96 of dense weights cycled through]
//                      [pattern=random|prefix|even|blockN]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
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

struct Group {
  const char* name;
  int64_t cols;
  std::vector<int64_t> rows;
};

// Random quantized bytes of rows x cols (a few distinct rows repeated: the
// scalar quantizer is slow on tens of MB).
std::vector<uint8_t> random_matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0, 1);
  constexpr int kDistinct = 16;
  const size_t rb = static_cast<size_t>(row_bytes(t, cols));
  std::vector<uint8_t> q(rb * kDistinct), out(rb * static_cast<size_t>(rows));
  std::vector<float> wf(static_cast<size_t>(cols));
  for (int i = 0; i < kDistinct; ++i) {
    for (float& f : wf) f = dist(rng);
    kernels::traits(kernels::Isa::kScalar, t).quantize_row(wf.data(), q.data() + i * rb, cols);
  }
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data() + static_cast<size_t>(r) * rb, q.data() + (r % kDistinct) * rb, rb);
  return out;
}

struct Layer {
  std::vector<kernels::PackedMatrix> packed;
  std::vector<kernels::ColumnMatrix> cols;  // one per matrix
  kernels::ColumnMatrix stacked;            // all rows of the group
  kernels::RowMatrix up_rows;               // gate/up: up's row copy
};

// Which inputs are kept: random (each with probability `kept`: what
// pruning's masks look like to the memory), prefix (the first kept * cols:
// one contiguous stretch of runs), even (evenly spaced: the same count,
// every gap alike), blockN (N kept, N skipped, in turn: kept 1/2 with gaps
// of N runs). The same count at different gaps tells what the skipped runs
// between kept ones cost (the prefetchers' reads past a run's end; the
// cache lines two runs share).
struct Pattern {
  enum Kind { kRandom, kPrefix, kEven, kBlock } kind = kRandom;
  int64_t block = 0;  // kBlock: N
};
// The pattern named by s; false where s names none.
bool parse_pattern(const std::string& s, Pattern& p) {
  if (s == "random" || s == "prefix" || s == "even") {
    p.kind = s == "random" ? Pattern::kRandom : s == "prefix" ? Pattern::kPrefix : Pattern::kEven;
    return true;
  }
  p = {Pattern::kBlock, s.rfind("block", 0) == 0 ? std::atoi(s.c_str() + 5) : 0};
  return p.block > 0;
}
// Whether input c of cols is kept under p (u: a uniform draw in [0, 1)).
template <typename Uniform>
bool keeps(const Pattern& p, int64_t c, int64_t cols, double kept, Uniform&& u) {
  switch (p.kind) {
    case Pattern::kPrefix:
      return c < static_cast<int64_t>(kept * static_cast<double>(cols));
    case Pattern::kEven:
      return static_cast<int64_t>(static_cast<double>(c + 1) * kept) >
             static_cast<int64_t>(static_cast<double>(c) * kept);
    case Pattern::kBlock:
      return (c / p.block) % 2 == 0;
    case Pattern::kRandom:
      break;
  }
  return u() < kept;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string shape = argc > 1 ? argv[1] : "tinyllama";
  const std::string type_name = argc > 2 ? argv[2] : "Q4_0";
  const double kept = argc > 3 ? std::atof(argv[3]) : 0.5;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const int reps = argc > 5 ? std::atoi(argv[5]) : 20;
  // Dense bytes of the layers called in turn (6 MB: they stay in L3).
  const double mbytes = argc > 6 ? std::atof(argv[6]) : 96;
  const std::string pattern_name = argc > 7 ? argv[7] : "random";
  Pattern pattern;
  if (!parse_pattern(pattern_name, pattern)) {
    std::fprintf(stderr, "bench_columns: pattern must be random, prefix, even or blockN, not %s\n",
                 pattern_name.c_str());
    return 2;
  }
  DType t = DType::Q4_0;
  if (type_name == "Q8_0") t = DType::Q8_0;
  if (type_name == "Q5_0") t = DType::Q5_0;
  std::vector<Group> groups;
  if (shape == "qwen-head")  // Qwen2.5-0.5B's output matrix: 151,936 rows, 161 KB Q8_0 runs
    groups = {{"head", 896, {151936}}};
  else if (shape == "qwen")
    groups = {{"qkv", 896, {896, 128, 128}},
              {"o", 896, {896}},
              {"gate_up", 896, {4864, 4864}},
              {"down", 4864, {896}}};
  else
    groups = {{"qkv", 2048, {2048, 256, 256}},
              {"o", 2048, {2048}},
              {"gate_up", 2048, {5632, 5632}},
              {"down", 5632, {2048}}};
  ThreadPool pool(threads);
  const bool cpu = threads == 1;
  std::printf("%s %s, kept %.2f, %d thread%s, best of %d (%s)\n", shape.c_str(), type_name.c_str(),
              kept, threads, threads > 1 ? "s" : "", reps, cpu ? "thread CPU time" : "wall time");
  for (const Group& g : groups) {
    int64_t total_rows = 0;
    for (int64_t r : g.rows) total_rows += r;
    // Enough layers for mbytes of dense weights (96: far past the last cache).
    const double layer_bytes =
        static_cast<double>(total_rows) * static_cast<double>(row_bytes(t, g.cols));
    const int n_layers = std::max(1, static_cast<int>(mbytes * 1e6 / layer_bytes));
    const bool cats = std::string(g.name) == "gate_up";
    std::vector<Layer> layers(static_cast<size_t>(n_layers));
    for (int l = 0; l < n_layers; ++l) {
      std::vector<std::vector<uint8_t>> ws;
      std::vector<kernels::ColumnMatrix::Part> parts;
      for (size_t i = 0; i < g.rows.size(); ++i) {
        ws.push_back(random_matrix(t, g.rows[i], g.cols, static_cast<uint32_t>(l * 7 + i)));
        const uint8_t* w = ws.back().data();
        layers[l].packed.push_back(kernels::PackedMatrix::pack(t, w, g.rows[i], g.cols));
        layers[l].cols.push_back(kernels::ColumnMatrix::build(t, w, g.rows[i], g.cols));
        parts.push_back({t, w, g.rows[i]});
      }
      layers[l].stacked = kernels::ColumnMatrix::build(parts, g.cols);
      if (cats) layers[l].up_rows = kernels::RowMatrix::copy(t, ws[1].data(), g.rows[1], g.cols);
    }
    std::mt19937 rng(3);
    std::normal_distribution<float> dist(0, 1);
    std::vector<float> x(static_cast<size_t>(g.cols));
    for (float& f : x) f = dist(rng);
    std::vector<int32_t> idx;
    std::uniform_real_distribution<double> u(0, 1);
    for (int64_t c = 0; c < g.cols; ++c)
      if (keeps(pattern, c, g.cols, kept, [&] { return u(rng); }))
        idx.push_back(static_cast<int32_t>(c));
    std::vector<int32_t> up_idx;  // CATS: the rows of up whose gate survived
    if (cats)
      for (int64_t r = 0; r < g.rows[1]; ++r)
        if (u(rng) < kept) up_idx.push_back(static_cast<int32_t>(r));
    std::vector<float> xz(x.size(), 0.0f);
    for (int32_t i : idx) xz[static_cast<size_t>(i)] = x[static_cast<size_t>(i)];
    std::vector<std::vector<float>> ys;
    for (int64_t r : g.rows) ys.emplace_back(static_cast<size_t>(r));
    std::vector<float> ystack(static_cast<size_t>(total_rows));
    std::vector<uint8_t> scratch;
    std::vector<float> xs;
    auto dense = [&](Layer& L) {
      std::vector<kernels::PackedOut> outs;
      for (size_t i = 0; i < g.rows.size(); ++i) outs.push_back({&L.packed[i], ys[i].data()});
      kernels::matmul(outs, xz.data(), 1, pool, scratch);
    };
    auto separate = [&](Layer& L) {
      std::vector<kernels::ColumnOut> outs;
      for (size_t i = 0; i < g.rows.size(); ++i) outs.push_back({&L.cols[i], ys[i].data()});
      kernels::matvec_columns(outs, x.data(), idx.data(), static_cast<int64_t>(idx.size()), pool,
                              xs);
    };
    auto stacked = [&](Layer& L) {
      kernels::matvec_columns(L.stacked, x.data(), idx.data(), static_cast<int64_t>(idx.size()),
                              ystack.data(), pool, xs);
    };
    auto up_rows = [&](Layer& L) {
      kernels::matvec_rows(L.up_rows, xz.data(), up_idx.data(), static_cast<int64_t>(up_idx.size()),
                           ys[1].data(), pool, scratch);
    };
    auto gcols_urows = [&](Layer& L) {
      kernels::matvec_columns(L.cols[0], x.data(), idx.data(), static_cast<int64_t>(idx.size()),
                              ys[0].data(), pool, xs);
      up_rows(L);
    };
    auto gdense_urows = [&](Layer& L) {
      kernels::matmul(L.packed[0], xz.data(), 1, ys[0].data(), pool, scratch);
      up_rows(L);
    };
    std::vector<std::pair<const char*, std::function<void(Layer&)>>> variants = {
        {"dense", dense}, {"separate", separate}, {"stacked", stacked}};
    if (cats) {
      variants.emplace_back("gcols+urows", gcols_urows);
      variants.emplace_back("gdense+urows", gdense_urows);
    }
    std::vector<double> best(variants.size(), 1e30);
    for (int r = 0; r < reps; ++r)
      for (size_t v = 0; v < variants.size(); ++v) {
        const double t0 = now(cpu);
        for (Layer& L : layers) variants[v].second(L);
        best[v] = std::min(best[v], (now(cpu) - t0) / n_layers);
      }
    std::printf("  %-8s %5lld x %-16s", g.name, static_cast<long long>(g.cols),
                [&] {
                  std::string s;
                  for (int64_t v : g.rows) s.append(s.empty() ? "" : "+").append(std::to_string(v));
                  return s;
                }()
                    .c_str());
    for (size_t v = 0; v < variants.size(); ++v)
      std::printf("  %s %7.1f us (%.2fx)", variants[v].first, best[v] * 1e6, best[v] / best[0]);
    std::printf("\n");
  }
  return 0;
}
