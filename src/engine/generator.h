// Single-sequence generation: feeds a prompt into a Session (reusing the
// cached prefix it shares with what the session already holds), then samples
// token by token, streaming text that never splits a UTF-8 character or shows
// a stop string. Used by `slm run` and `slm chat`; the server batches many
// sequences with its own scheduler on the same pieces (Sampler, StopMatcher,
// StreamDecoder).
//
// Ownership: a Generator borrows the model, tokenizer and pool, and owns its
// Session. Thread-safety: one thread drives it; cancel may be set from
// another thread or a signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {

enum class FinishReason { kEndOfText, kStopString, kLength, kContextFull, kCancelled };
std::string_view finish_reason_name(FinishReason r);  // "stop", "length", "context_full", "cancelled"

struct GenerateOptions {
  int64_t n_predict = -1;  // < 0: until end of text or a full context
  SamplerParams sampling;
  std::vector<std::string> stops;
  // When the context fills, drop the oldest tokens after the first n_keep and
  // recompute the rest, instead of stopping. Off unless asked for: it changes
  // what the model sees.
  bool context_shift = false;
  int64_t n_keep = 0;
  // Drop the word-boundary space before the first generated word (set when
  // generating from BOS alone, as llama2.c and llama.cpp print it).
  bool strip_leading_space = false;
};

struct GenerateResult {
  std::string text;               // what was streamed (stop string excluded)
  std::vector<int32_t> tokens;    // generated ids
  FinishReason finish = FinishReason::kEndOfText;
  int64_t n_prompt = 0;           // prompt tokens
  int64_t n_prompt_reused = 0;    // of them, already in the KV cache
  double prompt_ms = 0;           // time to process the new prompt tokens
  double gen_ms = 0;              // time spent generating after the first token
  double ttft_ms = 0;             // start of the call to the first token chosen
  int64_t n_shifts = 0;           // context shifts performed
};

class Generator {
 public:
  Generator(const model::Model& model, const tokenizer::Tokenizer& tok, ThreadPool& pool,
            const model::SessionOptions& session_options);

  // Generates a continuation of prompt (token ids, BOS included where wanted).
  // Throws slm::Error when the prompt does not fit the context.
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                          const std::function<void(std::string_view)>& on_text,
                          const std::atomic<bool>* cancel = nullptr);

  // Tokens currently held in the KV cache (prompt and generated, in order).
  const std::vector<int32_t>& history() const { return history_; }
  void reset();
  int64_t n_ctx() const { return session_.n_ctx(); }

 private:
  // Makes the session hold exactly prompt, feeding only what differs from history_.
  int64_t sync_prompt(std::span<const int32_t> prompt);
  void shift_context(int64_t n_keep);

  const model::Model& model_;
  const tokenizer::Tokenizer& tok_;
  ThreadPool& pool_;
  model::Session session_;
  std::vector<int32_t> history_;
};

}  // namespace slm::engine
