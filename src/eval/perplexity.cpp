// Perplexity over llama.cpp-style chunks or sliding windows (perplexity.h).
#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::eval {

std::vector<Window> plan_windows(int64_t n_tokens, const PerplexityOptions& o) {
  if (o.n_ctx < 2) throw Error("the context must hold at least 2 tokens (-c)");
  if (o.stride < 0 || o.stride > o.n_ctx)
    throw Error("--stride must be between 1 and the context size " + std::to_string(o.n_ctx));
  std::vector<Window> w;
  const auto full = [&] {
    return o.max_chunks > 0 && static_cast<int64_t>(w.size()) >= o.max_chunks;
  };
  if (o.stride == 0) {
    if (n_tokens < o.n_ctx)
      throw Error("the text has " + std::to_string(n_tokens) +
                  " tokens, fewer than one context of " + std::to_string(o.n_ctx) + " (lower -c)");
    const int64_t first = o.n_ctx / 2;
    for (int64_t i = 0; i + o.n_ctx <= n_tokens && !full(); i += o.n_ctx)
      w.push_back({i, i + o.n_ctx, first, true});
    return w;
  }
  if (n_tokens < 2) throw Error("the text has fewer than 2 tokens");
  int64_t prev_end = 0;
  for (int64_t begin = 0; !full(); begin += o.stride) {
    const int64_t end = std::min(begin + o.n_ctx, n_tokens);
    const int64_t first_target = std::max(prev_end, begin + 1);
    w.push_back({begin, end, first_target - begin - 1, false});
    prev_end = end;
    if (end == n_tokens) break;
  }
  return w;
}

uint64_t hash_tokens(std::span<const int32_t> tokens) {
  uint64_t h = 14695981039346656037ull;
  for (int32_t t : tokens) {
    const uint32_t u = static_cast<uint32_t>(t);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

PerplexityResult perplexity(const model::Model& model, std::span<const int32_t> tokens,
                            std::optional<int32_t> bos, const PerplexityOptions& o,
                            ThreadPool& pool, const ScoredRowFn& on_row,
                            const ProgressFn& on_progress) {
  const std::vector<Window> windows = plan_windows(static_cast<int64_t>(tokens.size()), o);
  const int64_t n_vocab = model.config().n_vocab;
  int64_t total = 0;
  for (const Window& w : windows) total += w.n_scored();

  model::SessionOptions so;
  so.n_ctx = o.n_ctx;
  so.n_batch = std::max<int64_t>(1, o.n_batch);
  so.allow_beyond_train_ctx = o.allow_beyond_train_ctx;
  model::Session session(model, so);
  session.set_adapter(o.adapter);
  const int64_t n_batch = std::min(so.n_batch, o.n_ctx);

  PerplexityResult r;
  r.n_tokens = static_cast<int64_t>(tokens.size());
  r.n_windows = static_cast<int64_t>(windows.size());
  std::vector<int32_t> input;
  std::vector<float> logits;  // [piece rows][n_vocab], one piece at a time
  const auto t0 = std::chrono::steady_clock::now();
  for (const Window& w : windows) {
    input.assign(tokens.begin() + w.begin, tokens.begin() + w.end);
    if (w.bos_first && bos) input[0] = *bos;
    session.reset();
    session.check_tokens(input);
    const int64_t len = w.end - w.begin;
    const int64_t last_row = len - 1;  // rows [first_row, last_row) are scored
    for (int64_t p = 0; p < len; p += n_batch) {
      const int64_t m = std::min(n_batch, len - p);
      const std::span<const int32_t> piece(input.data() + p, static_cast<size_t>(m));
      const bool scores = p + m > w.first_row && p < last_row;
      session.feed(piece, pool, scores ? &logits : nullptr);
      r.n_fed += m;
      if (!scores) continue;
      for (int64_t row = std::max(p, w.first_row); row < std::min(p + m, last_row); ++row) {
        const std::span<const float> lr(logits.data() + (row - p) * n_vocab,
                                        static_cast<size_t>(n_vocab));
        const int32_t target = input[static_cast<size_t>(row + 1)];
        const double log_z = log_normalizer(lr);
        r.nll.add(log_z - static_cast<double>(lr[static_cast<size_t>(target)]));
        if (on_row) on_row(r.nll.n - 1, lr, target, log_z);
      }
    }
    if (on_progress) on_progress(r.nll.n, total);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace slm::eval
