// Perplexity of a model on a token sequence.
//
// Default rule (llama.cpp's llama-perplexity -c N, so the numbers agree): the
// tokens (BOS first when the vocabulary adds one) are cut into floor(n/N)
// chunks of N; each chunk runs in a fresh context with its first token
// replaced by BOS, and only the second half is scored: logits rows
// r = N/2 ... N-2 predict tokens r+1, i.e. N - N/2 - 1 tokens per chunk.
// With stride S (1 <= S <= N), windows of up to N tokens start every S tokens
// (the Hugging Face sliding-window rule): each window scores the tokens that
// no earlier window scored, each with as much context as the window gives
// (a window's first token has none, so with S = N those go unscored); no BOS
// is substituted.
// Thread-safety: one caller; the pool spreads the forward pass.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "eval/logprob.h"

namespace slm {
class ThreadPool;
}
namespace slm::model {
class Model;
class LoraAdapter;
}  // namespace slm::model

namespace slm::eval {

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t stride = 0;      // 0: llama.cpp's chunks; else the sliding-window step
  int64_t n_batch = 512;   // rows per forward step
  int64_t max_chunks = 0;  // 0: every window; else at most this many
  bool allow_beyond_train_ctx = false;
  const model::LoraAdapter* adapter = nullptr;  // LoRA applied to every row (nullptr: the base)
};

// Tokens [begin, end) run as one fresh context, the first replaced by BOS
// when bos_first; logits rows r in [first_row, end - begin - 1) are scored,
// row r predicting token begin + r + 1.
struct Window {
  int64_t begin = 0, end = 0, first_row = 0;
  bool bos_first = false;
  int64_t n_scored() const { return end - begin - 1 - first_row; }
};

// The windows of a sequence of n_tokens; throws slm::Error when the text is
// shorter than one window or the options are out of range.
std::vector<Window> plan_windows(int64_t n_tokens, const PerplexityOptions& options);

struct PerplexityResult {
  NllStats nll;          // over the scored tokens
  int64_t n_tokens = 0;  // tokens of the text
  int64_t n_windows = 0;
  int64_t n_fed = 0;   // tokens run through the model
  double seconds = 0;  // wall time of the forward passes and scoring
};

// Called for each scored token in order (index 0, 1, ...) with its logits
// row [n_vocab], the target token and log_normalizer(row).
using ScoredRowFn =
    std::function<void(int64_t index, std::span<const float> row, int32_t target, double log_z)>;
// Progress in scored tokens: done of total.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// bos: the id substituted at each chunk's start (nullopt when the vocabulary
// adds no BOS; llama.cpp substitutes only then).
PerplexityResult perplexity(const model::Model& model, std::span<const int32_t> tokens,
                            std::optional<int32_t> bos, const PerplexityOptions& options,
                            ThreadPool& pool, const ScoredRowFn& on_row = {},
                            const ProgressFn& on_progress = {});

// FNV-1a 64 of the ids (int32 little-endian bytes): names the scored text in
// a logits file.
uint64_t hash_tokens(std::span<const int32_t> tokens);

}  // namespace slm::eval
