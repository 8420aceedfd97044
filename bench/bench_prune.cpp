// Decode speed with activation pruning against dense, side by side in one
// process: one model, its --sparsity files applied in turn (set_prune), each
// configuration timed on the same tokens, alternating, best of the
// repetitions. One thread is timed by its CPU time (other processes on a
// shared machine do not count); more threads by wall time. A configuration
// is a sparsity file or, for mixture-of-experts models, top-k=K or
// min-weight=P (--moe-top-k, --moe-min-weight).
// --profile: then one more pass of N_TOKENS per configuration with a
// model::StepProfile, printing where a token's wall time went (q/k/v, o,
// gate/up, down, head: dense kernels or column copies; pruning's passes;
// the rest: attention, norms, RoPE, the pool's hand-offs between them).
// Usage: bench_prune MODEL.gguf THREADS N_TOKENS REPS [--profile] [CONFIG ...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "clock.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/session.h"
#include "stats.h"

using namespace slm;

namespace {

using slm::bench::now;

// One decoding step of s (a token, its logits into out [n_vocab]) through
// the caller's scratch, so that a profile can be attached to it.
void decode(const model::Model& m, model::Session& s, int32_t token, model::Scratch& scratch,
            std::vector<float>& out, ThreadPool& pool) {
  model::SeqChunk c{&s, std::span<const int32_t>(&token, 1), out.data()};
  c.keep_last = false;  // written straight into out
  model::forward(m, std::span<const model::SeqChunk>(&c, 1), scratch, pool);
}

int32_t token_at(int t) {
  return static_cast<int32_t>((t * 7919 + 13) % 1000 + 2);
}

void print_profile(const model::StepProfile& p, double total_ms, int n_tokens) {
  using P = model::StepProfile;
  double sum = 0;
  for (int i = 0; i < P::kNumParts; ++i) {
    const double d = p.ns[i][0] * 1e-6 / n_tokens, c = p.ns[i][1] * 1e-6 / n_tokens;
    sum += d + c;
    if (p.calls[i][0] + p.calls[i][1] == 0) continue;
    std::printf(
        "    %-8s dense %7.3f ms (%5.1f%%, %4llu calls)  columns %7.3f ms (%5.1f%%, %4llu calls)",
        P::kNames[i], d, 100 * d / total_ms,
        static_cast<unsigned long long>(p.calls[i][0] / n_tokens), c, 100 * c / total_ms,
        static_cast<unsigned long long>(p.calls[i][1] / n_tokens));
    if (p.inputs[i] > 0)  // the share of their inputs the column calls read
      std::printf("  kept %.3f", static_cast<double>(p.kept[i]) / static_cast<double>(p.inputs[i]));
    std::printf("\n");
  }
  std::printf("    rest     %7.3f ms (%5.1f%%)   token %7.3f ms\n", total_ms - sum,
              100 * (total_ms - sum) / total_ms, total_ms);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: bench_prune MODEL THREADS N_TOKENS REPS [--profile] [SPARSITY.gguf | "
                 "top-k=K | min-weight=P ...]\n");
    return 2;
  }
  const int threads = std::atoi(argv[2]);
  const int n_tokens = std::atoi(argv[3]), reps = std::atoi(argv[4]);
  auto m = model::Model::load(argv[1]);
  std::vector<std::string> names = {"dense"};
  std::vector<model::PruneOptions> configs(1);
  bool profile = false;
  for (int i = 5; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--profile") {
      profile = true;
      continue;
    }
    names.push_back(a);
    model::PruneOptions p;
    if (a.rfind("top-k=", 0) == 0)
      p.moe_top_k = std::atoi(a.c_str() + 6);
    else if (a.rfind("min-weight=", 0) == 0)
      p.moe_min_weight = static_cast<float>(std::atof(a.c_str() + 11));
    else
      p.sparsity = std::make_shared<const model::Sparsity>(model::Sparsity::load(a));
    configs.push_back(p);
  }
  // Column copies of every pruned matrix are made once, by the first file.
  for (size_t i = configs.size(); i-- > 1;) m->set_prune(configs[i], names[i]);
  std::printf("model %s, %d thread%s, %d tokens, best of %d (%s)\n", argv[1], threads,
              threads > 1 ? "s" : "", n_tokens, reps,
              threads == 1 ? "thread CPU time" : "wall time");
  std::printf("column copies: %.1f MiB (weights in the file: %.1f MiB)\n",
              m->column_bytes() / 1048576.0,
              static_cast<double>(m->file().file_size()) / 1048576.0);
  ThreadPool pool(threads);
  model::SessionOptions so;
  so.n_ctx = n_tokens + 2;
  model::Session s(*m, so);
  model::Scratch scratch(m->config(), 1);
  std::vector<float> logits(static_cast<size_t>(m->config().n_vocab));
  std::vector<double> best(configs.size(), 1e30);
  // Per round and config: the wall time; a round's ratios compare passes run
  // seconds apart, so on a host whose speed drifts (the 2-core Zen 5: dense
  // 95-142 tok/s from run to run) their median is steadier than best / best.
  std::vector<std::vector<double>> times(configs.size());
  // The share of the pruned taps' inputs zeroed over the timed tokens (the
  // file's level is the share on its calibration text).
  std::vector<double> achieved(configs.size(), 0.0);
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < configs.size(); ++i) {
      m->set_prune(configs[i], names[i]);
      s.reset();
      decode(*m, s, 1, scratch, logits, pool);  // warm
      model::PruneStats sum;                    // prune_stats(): the last step's counts
      const double t0 = now(threads == 1);
      for (int t = 0; t < n_tokens; ++t) {
        decode(*m, s, token_at(t), scratch, logits, pool);
        sum.zeroed += scratch.prune_stats().zeroed;
        sum.total += scratch.prune_stats().total;
      }
      const double dt = now(threads == 1) - t0;
      best[i] = std::min(best[i], dt);
      times[i].push_back(dt);
      if (sum.total > 0)
        achieved[i] = static_cast<double>(sum.zeroed) / static_cast<double>(sum.total);
    }
  for (size_t i = 0; i < configs.size(); ++i) {
    std::vector<double> ratios;
    for (size_t r = 0; r < times[i].size(); ++r) ratios.push_back(times[0][r] / times[i][r]);
    const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
    std::printf(
        "%-28s level %.2f  %7.2f tok/s  %.2fx dense  (median of rounds %.2fx, range %.2f-%.2f; "
        "achieved %.2f)\n",
        names[i].c_str(), configs[i].sparsity ? configs[i].sparsity->level : 0.0,
        n_tokens / best[i], best[0] / best[i], slm::bench::median(ratios), *lo, *hi, achieved[i]);
  }
  if (!profile) return 0;
  std::printf("where a token's wall time goes (one pass of %d tokens each):\n", n_tokens);
  for (size_t i = 0; i < configs.size(); ++i) {
    m->set_prune(configs[i], names[i]);
    s.reset();
    decode(*m, s, 1, scratch, logits, pool);
    model::StepProfile p;
    scratch.set_profile(&p);
    const double t0 = now(false);
    for (int t = 0; t < n_tokens; ++t) decode(*m, s, token_at(t), scratch, logits, pool);
    const double ms = (now(false) - t0) * 1e3 / n_tokens;
    scratch.set_profile(nullptr);
    std::printf("  %s\n", names[i].c_str());
    print_profile(p, ms, n_tokens);
  }
  return 0;
}
