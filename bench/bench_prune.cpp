// Decode speed with activation pruning against dense, side by side in one
// process: one model, its --sparsity files applied in turn (set_prune), each
// configuration timed on the same tokens, alternating, best of the
// repetitions. One thread is timed by its CPU time (other processes on a
// shared machine do not count); more threads by wall time. A configuration
// is a sparsity file or, for mixture-of-experts models, top-k=K or
// min-weight=P (--moe-top-k, --moe-min-weight).
// Usage: bench_prune MODEL.gguf THREADS N_TOKENS REPS [CONFIG ...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "clock.h"
#include "model/model.h"
#include "model/session.h"

using namespace slm;

namespace {

using slm::bench::now;

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: bench_prune MODEL THREADS N_TOKENS REPS [SPARSITY.gguf | top-k=K | "
                 "min-weight=P ...]\n");
    return 2;
  }
  const int threads = std::atoi(argv[2]);
  const int n_tokens = std::atoi(argv[3]), reps = std::atoi(argv[4]);
  auto m = model::Model::load(argv[1]);
  std::vector<std::string> names = {"dense"};
  std::vector<model::PruneOptions> configs(1);
  for (int i = 5; i < argc; ++i) {
    const std::string a = argv[i];
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
  std::vector<double> best(configs.size(), 1e30);
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < configs.size(); ++i) {
      m->set_prune(configs[i], names[i]);
      s.reset();
      s.decode(1, pool);  // warm
      const double t0 = now(threads == 1);
      for (int t = 0; t < n_tokens; ++t)
        s.decode(static_cast<int32_t>((t * 7919 + 13) % 1000 + 2), pool);
      best[i] = std::min(best[i], now(threads == 1) - t0);
    }
  for (size_t i = 0; i < configs.size(); ++i)
    std::printf("%-28s level %.2f  %7.2f tok/s  %.2fx dense\n", names[i].c_str(),
                configs[i].sparsity ? configs[i].sparsity->level : 0.0, n_tokens / best[i],
                best[0] / best[i]);
  return 0;
}
