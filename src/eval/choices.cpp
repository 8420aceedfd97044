// Batched multiple-choice scoring (choices.h).
#include "eval/choices.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"
#include "eval/logprob.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::eval {
namespace {

// One task's token sequences and where their scored tokens start.
struct Prepared {
  std::vector<std::vector<int32_t>> seqs;  // [n_endings][tokens]
  int64_t prefix = 0;                      // shared tokens run once (the common prefix)
  int64_t rows2 = 0;                       // rows of the second phase: sum of (size - 1 - prefix)
  int64_t max_len = 0;
};

int64_t utf8_chars(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

Prepared prepare(const ChoiceTask& t, const tokenizer::Tokenizer& tok) {
  Prepared p;
  const std::string sep = t.context.empty() ? "" : " ";
  size_t min_len = SIZE_MAX;
  for (const std::string& e : t.endings) {
    p.seqs.push_back(
        tok.encode(t.context + sep + e, /*add_special=*/true, /*parse_special=*/false));
    min_len = std::min(min_len, p.seqs.back().size());
    p.max_len = std::max(p.max_len, static_cast<int64_t>(p.seqs.back().size()));
  }
  size_t prefix = 0;
  while (prefix < min_len) {
    bool same = true;
    for (const auto& s : p.seqs) same &= s[prefix] == p.seqs[0][prefix];
    if (!same) break;
    ++prefix;
  }
  // Every ending scores at least one token (identical endings tie).
  if (prefix == min_len && prefix > 0) --prefix;
  if (prefix == 0)
    throw Error("task at line " + std::to_string(t.line) +
                ": the endings share no first token to condition on (the vocabulary adds no BOS "
                "and the context "
                "is empty)");
  p.prefix = static_cast<int64_t>(prefix);
  for (const auto& s : p.seqs) p.rows2 += static_cast<int64_t>(s.size()) - 1 - p.prefix;
  return p;
}

int pick(const std::vector<double>& v) {
  int best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int>(i);
  return best;
}

double logprob(const float* row, int64_t n_vocab, int32_t token) {
  const std::span<const float> r(row, static_cast<size_t>(n_vocab));
  return static_cast<double>(r[static_cast<size_t>(token)]) - log_normalizer(r);
}

}  // namespace

Accuracy accuracy(int64_t n_right, int64_t n) {
  Accuracy a;
  if (n <= 0) return a;
  a.value = static_cast<double>(n_right) / static_cast<double>(n);
  a.stderr_ = n > 1 ? std::sqrt(a.value * (1 - a.value) / static_cast<double>(n - 1)) : 0.0;
  return a;
}

ChoiceResult score_choices(const model::Model& model, const tokenizer::Tokenizer& tok,
                           std::span<const ChoiceTask> tasks, const ChoiceOptions& o,
                           ThreadPool& pool, const TaskProgressFn& on_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n_vocab = model.config().n_vocab;
  std::vector<Prepared> prep;
  prep.reserve(tasks.size());
  int64_t max_len = 0, max_rows = std::max<int64_t>(1, o.max_rows), max_endings = 0;
  const ChoiceTask* longest = nullptr;
  for (const ChoiceTask& t : tasks) {
    prep.push_back(prepare(t, tok));
    const Prepared& p = prep.back();
    if (p.max_len > max_len) longest = &t;
    max_len = std::max(max_len, p.max_len);
    max_rows = std::max({max_rows, p.prefix, p.rows2});
    max_endings = std::max<int64_t>(max_endings, static_cast<int64_t>(t.endings.size()));
  }
  if (longest && max_len > model.config().n_ctx_train && !o.allow_beyond_train_ctx)
    throw Error("task at line " + std::to_string(longest->line) + " needs " +
                std::to_string(max_len) + " tokens, more than the model's training context of " +
                std::to_string(model.config().n_ctx_train) +
                " (--allow-long-context evaluates beyond it)");

  model::SessionOptions so;
  so.n_ctx = std::max<int64_t>(max_len, 1);
  so.n_batch = std::max<int64_t>(max_rows, 1);  // a step may feed a whole prefix to one session
  so.allow_beyond_train_ctx = o.allow_beyond_train_ctx;
  const int64_t n_sessions = std::max(o.max_sessions, max_endings);
  std::vector<std::unique_ptr<model::Session>> sessions;
  model::Scratch scratch(model.config(), max_rows);
  std::vector<float> logits1, logits2;  // [tasks of a group][n_vocab], [phase-2 rows][n_vocab]
  std::vector<model::SeqChunk> chunks;
  std::vector<int64_t> offset;  // phase-2 row of each ending of the group

  ChoiceResult r;
  r.tasks.reserve(tasks.size());
  int64_t right[3] = {0, 0, 0};
  for (size_t i0 = 0; i0 < tasks.size();) {
    // A group of tasks whose sessions and rows fit one pair of steps.
    size_t i1 = i0;
    int64_t used = 0, rows1 = 0, rows2 = 0;
    while (i1 < tasks.size()) {
      const int64_t e = static_cast<int64_t>(tasks[i1].endings.size());
      if (i1 > i0 && (used + e > n_sessions || rows1 + prep[i1].prefix > max_rows ||
                      rows2 + prep[i1].rows2 > max_rows))
        break;
      used += e;
      rows1 += prep[i1].prefix;
      rows2 += prep[i1].rows2;
      ++i1;
    }
    while (static_cast<int64_t>(sessions.size()) < used)
      sessions.push_back(std::make_unique<model::Session>(model, so));
    logits1.resize(static_cast<size_t>((i1 - i0) * n_vocab));
    logits2.resize(static_cast<size_t>(std::max<int64_t>(rows2, 1) * n_vocab));

    // Phase 1: each task's common prefix, keeping the logits of its last row.
    chunks.clear();
    for (size_t i = i0, s0 = 0; i < i1; s0 += tasks[i].endings.size(), ++i) {
      model::Session& s = *sessions[s0];
      s.reset();
      const std::span<const int32_t> toks(prep[i].seqs[0].data(),
                                          static_cast<size_t>(prep[i].prefix));
      s.check_tokens(toks);
      chunks.push_back({&s, toks, logits1.data() + (i - i0) * n_vocab, false, nullptr, o.adapter});
    }
    model::forward(model, chunks, scratch, pool);
    r.n_fed += rows1;

    // Phase 2: the prefix's cache copied to each ending, then the ending's own tokens.
    chunks.clear();
    offset.clear();
    int64_t row = 0;
    for (size_t i = i0, s0 = 0; i < i1; s0 += tasks[i].endings.size(), ++i) {
      for (size_t e = 0; e < tasks[i].endings.size(); ++e) {
        model::Session& s = *sessions[s0 + e];
        if (e > 0) s.copy_prefix(*sessions[s0], prep[i].prefix);
        const std::vector<int32_t>& seq = prep[i].seqs[e];
        const int64_t n2 = static_cast<int64_t>(seq.size()) - 1 - prep[i].prefix;
        offset.push_back(row);
        if (n2 <= 0) continue;
        const std::span<const int32_t> toks(seq.data() + prep[i].prefix, static_cast<size_t>(n2));
        s.check_tokens(toks);
        chunks.push_back({&s, toks, logits2.data() + row * n_vocab, true, nullptr, o.adapter});
        row += n2;
      }
    }
    if (!chunks.empty()) model::forward(model, chunks, scratch, pool);
    r.n_fed += rows2;

    // Scores: the first scored token from phase 1, the rest from phase 2.
    size_t k = 0;
    for (size_t i = i0; i < i1; ++i) {
      TaskScore ts;
      ts.gold = tasks[i].gold;
      std::vector<double> by_sum, by_tokens, by_chars;
      for (size_t e = 0; e < tasks[i].endings.size(); ++e, ++k) {
        const std::vector<int32_t>& seq = prep[i].seqs[e];
        const int64_t p = prep[i].prefix;
        EndingScore es;
        es.sum_logprob =
            logprob(logits1.data() + (i - i0) * n_vocab, n_vocab, seq[static_cast<size_t>(p)]);
        for (int64_t j = p + 1; j < static_cast<int64_t>(seq.size()); ++j)
          es.sum_logprob += logprob(logits2.data() + (offset[k] + j - p - 1) * n_vocab, n_vocab,
                                    seq[static_cast<size_t>(j)]);
        es.n_tokens = static_cast<int64_t>(seq.size()) - p;
        es.n_chars = std::max<int64_t>(1, utf8_chars(tasks[i].endings[e]));
        by_sum.push_back(es.sum_logprob);
        by_tokens.push_back(es.sum_logprob / static_cast<double>(es.n_tokens));
        by_chars.push_back(es.sum_logprob / static_cast<double>(es.n_chars));
        ts.endings.push_back(es);
      }
      ts.pred = pick(by_sum);
      ts.pred_norm_tokens = pick(by_tokens);
      ts.pred_norm_chars = pick(by_chars);
      right[0] += ts.pred == ts.gold;
      right[1] += ts.pred_norm_tokens == ts.gold;
      right[2] += ts.pred_norm_chars == ts.gold;
      r.tasks.push_back(std::move(ts));
    }
    i0 = i1;
    if (on_progress) on_progress(static_cast<int64_t>(i0), static_cast<int64_t>(tasks.size()));
  }
  const int64_t n = static_cast<int64_t>(tasks.size());
  r.acc = accuracy(right[0], n);
  r.acc_norm_tokens = accuracy(right[1], n);
  r.acc_norm_chars = accuracy(right[2], n);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace slm::eval
