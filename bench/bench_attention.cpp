// Attention of one batched decode step over many sequences of different
// lengths: one ops::attention job per sequence (the old per-sequence loop)
// against one ops::attention_many job for all of them, with a task per
// (sequence, head) and with a task per (sequence, KV head) (score rows for
// the group, as the forward pass gives it; the ratio is these two), for the
// attention shape of Qwen2.5-0.5B (14 heads, 2 KV heads, head_dim 64, f16
// cache) and 24 layers a step. Sequence i is at context base + (i * 37) %
// base (base 128: prompt 128, part way through 128 generated tokens). The
// variants alternate for several rounds; the median microseconds per step
// are printed.
// Usage: bench_attention [threads=2] [rounds=7] [streams=1,4,8,16,32] [base=128]
//
// bench_attention --prefill [rounds=7] [prompts=128,512,2048]: one prompt
// step's attention (the same shape, a prompt of P tokens at position 0), the
// per-(token, head) tasks against the prefill blocks (ops.h), one thread,
// median thread CPU time per layer (a shared machine's load steals wall
// time, not the cycles a thread was given).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "clock.h"
#include "kernels/kernels.h"
#include "ops/ops.h"
#include "stats.h"

using namespace slm;
using slm::bench::median;

namespace {

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int64_t> parse_list(const char* arg, std::vector<int64_t> def) {
  if (arg == nullptr) return def;
  std::vector<int64_t> out;
  std::stringstream ss(arg);
  for (std::string s; std::getline(ss, s, ',');) out.push_back(std::atoll(s.c_str()));
  return out;
}

int prefill(int rounds, const std::vector<int64_t>& prompts) {
  const int64_t n_head = 14, n_head_kv = 2, head_dim = 64, kv_dim = n_head_kv * head_dim;
  const DType type = DType::F16;
  const size_t row = ops::kv_row_bytes(type, kv_dim);
  ThreadPool pool(1);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::printf(
      "attention of one prompt step (qwen2.5-0.5b shape, f16 cache), %s, 1 thread,\n"
      "thread CPU time per layer, median of %d rounds\n",
      std::string(kernels::isa_name(kernels::active_isa())).c_str(), rounds);
  std::printf("%8s %20s %20s %7s\n", "prompt", "per token (us)", "prefill blocks (us)", "ratio");
  for (const int64_t n : prompts) {
    std::vector<uint8_t> k(row * static_cast<size_t>(n)), v(k.size());
    std::vector<float> kv(static_cast<size_t>(kv_dim));
    for (int64_t p = 0; p < n; ++p) {
      for (float& f : kv) f = dist(rng);
      ops::kv_store(type, kv.data(), kv_dim, &k[static_cast<size_t>(p) * row]);
      for (float& f : kv) f = dist(rng);
      ops::kv_store(type, kv.data(), kv_dim, &v[static_cast<size_t>(p) * row]);
    }
    std::vector<float> q(static_cast<size_t>(n * n_head * head_dim)), out(q.size());
    for (float& f : q) f = dist(rng);
    ops::AttentionShape sh{n, 0, n_head, n_head_kv, head_dim};
    sh.kv_type = type;
    const ops::AttentionCall call{sh, q.data(), k.data(), v.data(), out.data()};
    std::vector<float> scratch(static_cast<size_t>(n));
    const int64_t stride = ops::attention_prefill_floats(n, head_dim);
    std::vector<float> blocks(static_cast<size_t>(stride));
    std::vector<int64_t> starts;
    std::vector<double> each, many;
    for (int r = 0; r < rounds; ++r) {
      double t0 = bench::now(true);
      ops::attention_many(std::span(&call, 1), starts, scratch.data(), n, pool);
      each.push_back((bench::now(true) - t0) * 1e6);
      t0 = bench::now(true);
      ops::attention_many(std::span(&call, 1), starts, scratch.data(), n, pool, blocks.data(),
                          stride);
      many.push_back((bench::now(true) - t0) * 1e6);
    }
    const double a = median(each), b = median(many);
    std::printf("%8lld %20.0f %20.0f %6.2fx\n", static_cast<long long>(n), a, b, a / b);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--prefill")
    return prefill(argc > 2 ? std::atoi(argv[2]) : 7,
                   parse_list(argc > 3 ? argv[3] : nullptr, {128, 512, 2048}));
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  std::vector<int64_t> streams = {1, 4, 8, 16, 32};
  if (argc > 3) {
    streams.clear();
    std::stringstream ss(argv[3]);
    for (std::string s; std::getline(ss, s, ',');) streams.push_back(std::atoll(s.c_str()));
  }
  // Sequence i at context base + (i * 37) % base.
  const int64_t base = argc > 4 ? std::max<int64_t>(1, std::atoll(argv[4])) : 128;
  const int64_t n_layer = 24, n_head = 14, n_head_kv = 2, head_dim = 64, n_ctx = 2 * base + 8;
  const int64_t kv_dim = n_head_kv * head_dim;
  const DType type = DType::F16;
  const size_t row = ops::kv_row_bytes(type, kv_dim);
  ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::printf(
      "attention of one decode step, %d threads, %lld layers, f16 cache; median of %d rounds\n",
      threads, static_cast<long long>(n_layer), rounds);
  std::printf("%8s %22s %22s %22s %7s\n", "streams", "per sequence (us/step)", "per head (us/step)",
              "per KV head (us/step)", "ratio");
  for (const int64_t n : streams) {
    // One cache per sequence and layer is more memory than the test needs:
    // layers share a sequence's cache (the bytes read per step are the same).
    std::vector<std::vector<uint8_t>> k(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    std::vector<std::vector<float>> q(static_cast<size_t>(n)), out(static_cast<size_t>(n));
    std::vector<ops::AttentionCall> calls;
    std::vector<float> kv(static_cast<size_t>(kv_dim));
    for (int64_t i = 0; i < n; ++i) {
      const auto s = static_cast<size_t>(i);
      k[s].resize(row * n_ctx);
      v[s].resize(row * n_ctx);
      for (int64_t p = 0; p < n_ctx; ++p) {
        for (float& f : kv) f = dist(rng);
        ops::kv_store(type, kv.data(), kv_dim, &k[s][static_cast<size_t>(p) * row]);
        for (float& f : kv) f = dist(rng);
        ops::kv_store(type, kv.data(), kv_dim, &v[s][static_cast<size_t>(p) * row]);
      }
      q[s].resize(static_cast<size_t>(n_head * head_dim));
      for (float& f : q[s]) f = dist(rng);
      out[s].resize(q[s].size());
      ops::AttentionShape sh{1, base + (i * 37) % base, n_head, n_head_kv, head_dim};
      sh.kv_type = type;
      calls.push_back({sh, q[s].data(), k[s].data(), v[s].data(), out[s].data()});
    }
    std::vector<float> scratch(static_cast<size_t>(threads * n_ctx));
    std::vector<int64_t> starts;
    // Score rows for a KV group's heads: a task per (sequence, KV head).
    const int64_t group_stride = ops::attention_group_rows(n_head, n_head_kv) * n_ctx;
    std::vector<float> group_scratch(static_cast<size_t>(threads * group_stride));
    std::vector<double> each, many, grouped;
    const int reps = std::max<int>(4, static_cast<int>(256 / n));
    for (int r = 0; r < rounds; ++r) {
      double t0 = seconds();
      for (int rep = 0; rep < reps; ++rep)
        for (int64_t l = 0; l < n_layer; ++l)
          for (const ops::AttentionCall& c : calls)
            ops::attention(c.shape, c.q, c.k_cache, c.v_cache, c.out, scratch.data(), pool);
      each.push_back((seconds() - t0) / reps * 1e6);
      t0 = seconds();
      for (int rep = 0; rep < reps; ++rep)
        for (int64_t l = 0; l < n_layer; ++l)
          ops::attention_many(calls, starts, scratch.data(), n_ctx, pool);
      many.push_back((seconds() - t0) / reps * 1e6);
      t0 = seconds();
      for (int rep = 0; rep < reps; ++rep)
        for (int64_t l = 0; l < n_layer; ++l)
          ops::attention_many(calls, starts, group_scratch.data(), group_stride, pool);
      grouped.push_back((seconds() - t0) / reps * 1e6);
    }
    const double a = median(each), b = median(many), c = median(grouped);
    std::printf("%8lld %22.0f %22.0f %22.0f %6.2fx\n", static_cast<long long>(n), a, b, c, b / c);
  }
  return 0;
}
