// Decode speed with activation pruning against dense, side by side in one
// process: one model, its --sparsity files applied in turn (set_prune), each
// configuration timed on the same tokens, alternating, best of the
// repetitions. One thread is timed by its CPU time (other processes on a
// shared machine do not count); more threads by wall time.
// Usage: bench_prune MODEL.gguf THREADS N_TOKENS REPS [SPARSITY.gguf ...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "model/model.h"
#include "model/session.h"

using namespace slm;

namespace {

double now(bool cpu_time) {
  if (!cpu_time)
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_prune MODEL THREADS N_TOKENS REPS [SPARSITY.gguf ...]\n");
    return 2;
  }
  const int threads = std::atoi(argv[2]);
  const int n_tokens = std::atoi(argv[3]), reps = std::atoi(argv[4]);
  auto m = model::Model::load(argv[1]);
  std::vector<std::string> names = {"dense"};
  std::vector<std::shared_ptr<const model::Sparsity>> sp = {nullptr};
  for (int i = 5; i < argc; ++i) {
    names.push_back(argv[i]);
    sp.push_back(std::make_shared<const model::Sparsity>(model::Sparsity::load(argv[i])));
  }
  // Column copies of every pruned matrix are made once, by the first file.
  for (size_t i = sp.size(); i-- > 1;) m->set_prune({sp[i], 0, 0}, names[i]);
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
  std::vector<double> best(sp.size(), 1e30);
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < sp.size(); ++i) {
      m->set_prune({sp[i], 0, 0}, names[i]);
      s.reset();
      s.decode(1, pool);  // warm
      const double t0 = now(threads == 1);
      for (int t = 0; t < n_tokens; ++t)
        s.decode(static_cast<int32_t>((t * 7919 + 13) % 1000 + 2), pool);
      best[i] = std::min(best[i], now(threads == 1) - t0);
    }
  for (size_t i = 0; i < sp.size(); ++i)
    std::printf("%-28s level %.2f  %7.2f tok/s  %.2fx dense\n", names[i].c_str(),
                sp[i] ? sp[i]->level : 0.0, n_tokens / best[i], best[0] / best[i]);
  return 0;
}
