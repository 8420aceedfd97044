// Synchronous one-sequence generation for slm run and slm chat: a one-slot
// BatchEngine driven in the caller's thread. The prompt is fed past the
// prefix the slot's KV cache already holds (so a chat re-rendered every turn
// only processes the new turn), then tokens are sampled and streamed as text
// that never splits a UTF-8 character or shows a stop string. The loop is the
// batch engine's (batch.h); this class only adapts options and results.
//
// Ownership: a Generator borrows the model, tokenizer and pool and owns its
// engine (one Session). Thread-safety: one thread drives it; cancel may be set
// from another thread or a signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/batch.h"
#include "model/session.h"

namespace slm::engine {

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
  // LoRA deltas (nullptr: the base model).
  std::shared_ptr<const model::LoraAdapter> adapter;
  // Constrained output (see Request::grammar); null: free text.
  std::shared_ptr<const grammar::Grammar> grammar;
};

struct GenerateResult {
  std::string text;               // what was streamed (stop string excluded)
  std::vector<int32_t> tokens;    // generated ids
  FinishReason finish = FinishReason::kStop;
  int64_t n_prompt = 0;           // prompt tokens
  int64_t n_prompt_reused = 0;    // of them, already in the KV cache
  double prompt_ms = 0;           // time to process the new prompt tokens
  double gen_ms = 0;              // time spent generating after the first token
  double ttft_ms = 0;             // start of the call to the first token chosen
  int64_t n_shifts = 0;           // context shifts performed
  int64_t n_drafted = 0;          // speculative draft tokens verified
  int64_t n_accepted = 0;         // of them, accepted
};

class Generator {
 public:
  // session_options: n_ctx, n_batch (prompt tokens per forward pass) and the
  // long-context permission of the one slot; draft_max: speculative decoding
  // (BatchOptions::draft_max; 0: off), by prompt lookup or, with draft_model
  // (borrowed, same vocabulary), by that model.
  Generator(const model::Model& model, const tokenizer::Tokenizer& tok, ThreadPool& pool,
            const model::SessionOptions& session_options, int draft_max = 0,
            const model::Model* draft_model = nullptr);

  // Generates a continuation of prompt (token ids, BOS included where wanted).
  // Throws RequestError when the prompt cannot run (empty, an id out of range,
  // longer than the context), slm::Error when the engine fails.
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                          const std::function<void(std::string_view)>& on_text,
                          const std::atomic<bool>* cancel = nullptr);

  // Tokens currently held in the KV cache (prompt and generated, in order).
  std::span<const int32_t> history() const { return engine_.cached_tokens(0); }
  void reset() { engine_.clear_cache(); }
  int64_t n_ctx() const { return engine_.n_ctx(); }

 private:
  BatchEngine engine_;
};

}  // namespace slm::engine
