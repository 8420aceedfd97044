// Multiple-choice scoring (HellaSwag and the like), batched through
// model::forward with many sequences per step.
//
// Each ending s is tokenized as context + " " + ending (BOS first when the
// vocabulary adds one; no space when the context is empty). As llama-perplexity
// --hellaswag does, the scored tokens of every ending start where the endings'
// token sequences first differ (their common prefix p, capped so that each
// ending scores at least one token): the prefix runs once per task, its KV
// cache is copied to the other endings' sessions, and each ending's tokens
// p... are scored by their log-probabilities (double log-softmax).
// Metrics per task, argmax with ties to the lower index:
//   acc             sum of the ending's log-probabilities
//   acc_norm_tokens that sum / its number of scored tokens (llama.cpp)
//   acc_norm_chars  that sum / the ending's length in characters (UTF-8 code
//                   points; lm-evaluation-harness)
// each with the standard error sqrt(p (1 - p) / (n - 1)).
// Thread-safety: one caller; the pool spreads the forward pass.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "eval/tasks.h"

namespace slm {
class ThreadPool;
}
namespace slm::model {
class Model;
class LoraAdapter;
}  // namespace slm::model
namespace slm::tokenizer {
class Tokenizer;
}

namespace slm::eval {

struct ChoiceOptions {
  int64_t max_rows = 512;     // token rows per forward step (raised to fit one task)
  int64_t max_sessions = 64;  // sequences (endings) held at once
  bool allow_beyond_train_ctx = false;
  const model::LoraAdapter* adapter = nullptr;  // LoRA applied to every row (nullptr: the base)
};

struct EndingScore {
  double sum_logprob = 0;
  int64_t n_tokens = 0;  // scored tokens
  int64_t n_chars = 0;   // UTF-8 code points of the ending
};

struct TaskScore {
  std::vector<EndingScore> endings;
  int gold = 0;
  int pred = 0, pred_norm_tokens = 0, pred_norm_chars = 0;
};

struct Accuracy {
  double value = 0, stderr_ = 0;  // share of tasks right, and its standard error
};

struct ChoiceResult {
  std::vector<TaskScore> tasks;
  Accuracy acc, acc_norm_tokens, acc_norm_chars;
  int64_t n_fed = 0;  // tokens run through the model
  double seconds = 0;
};

// Progress in tasks: done of total.
using TaskProgressFn = std::function<void(int64_t done, int64_t total)>;

// Throws slm::Error naming the task's line when a task does not fit the
// model's context or has nothing to condition on.
ChoiceResult score_choices(const model::Model& model, const tokenizer::Tokenizer& tok,
                           std::span<const ChoiceTask> tasks, const ChoiceOptions& options,
                           ThreadPool& pool, const TaskProgressFn& on_progress = {});

// acc and its standard error from per-task right/wrong counts (exposed for tests).
Accuracy accuracy(int64_t n_right, int64_t n);

}  // namespace slm::eval
