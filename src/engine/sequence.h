// One generation request inside the engine, for every front end (slm run,
// slm chat, slm serve): what is asked (Request), what comes out (Update,
// FinishReason) and the per-sequence state that turns sampled ids into text
// (Sequence: its sampler with its logits-processor chain, stop strings and the
// streaming UTF-8 decoder). The batch engine (batch.h) owns the slots and the
// KV caches; a Sequence only says what to do with each next-token row.
//
// Validation happens once, when a Sequence is made (BatchEngine::make_sequence):
// prompt ids, prompt length against the context, max_tokens and the sampling
// parameters; the rest of the engine trusts what it holds.
//
// Ownership / thread-safety: a Sequence is made on any thread, then owned and
// driven by the thread that steps its engine. Its sink is called on that thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "model/lora.h"
#include "tokenizer/tokenizer.h"

namespace slm::grammar {
struct Grammar;
}

namespace slm::engine {

using Clock = std::chrono::steady_clock;

// Why a sequence ended; one enum for the CLI and the server.
enum class FinishReason {
  kStop,         // end-of-generation token or a stop string
  kLength,       // max_tokens or the request's time limit
  kContextFull,  // no room for the next token (and no context shift)
  kCancelled,    // the caller cancelled (Ctrl-C, a client that went away)
  kError,        // see Update::error
};
// "stop", "length", "context_full", "cancelled", "error"
std::string_view finish_reason_name(FinishReason r);

// What a full context does to a request.
enum class ContextPolicy {
  kRefuse,  // prompt + max_tokens must fit: refused at submission otherwise (the API)
  kClamp,   // max_tokens is lowered to what fits (max_tokens < 0: all that fits)
  kStop,    // generate until the context is full; finish kContextFull (slm run / chat)
  kShift,   // drop old tokens after the first n_keep and recompute the rest
};

// What a KV cache row depends on. Two caches share a prefix only when every
// non-token part is equal (the adapter now; image hashes later go here too).
struct CacheKey {
  std::vector<int32_t> tokens;
  uint64_t adapter = 0;  // 0: the base model
};
// Leading tokens the first n_cached of cached can serve to wanted: 0 when
// their non-token parts differ.
size_t shared_prefix(const CacheKey& cached, size_t n_cached, const CacheKey& wanted);

struct Request {
  CacheKey prompt;  // token ids, BOS included where wanted
  SamplerParams sampling;
  std::vector<std::string> stops;
  int64_t max_tokens = 16;  // generated tokens at most; < 0: no limit (kClamp/kStop/kShift)
  ContextPolicy context = ContextPolicy::kRefuse;
  int64_t n_keep = 0;     // kShift: leading tokens never dropped
  int top_logprobs = -1;  // < 0: no logprobs; else 0..20 alternatives per token
  // A prompt that is only BOS starts the text: drop the space SentencePiece
  // puts before its first word. Otherwise the output continues the prompt.
  bool strip_leading_space = false;
  Clock::time_point deadline = Clock::time_point::max();
  // LoRA deltas for this request (nullptr: the base model); prompt.adapter
  // must be adapter->id() so its KV cache is never shared with another's.
  std::shared_ptr<const model::LoraAdapter> adapter;
  // Constrained output (grammar.h; a JSON Schema compiles to one): the
  // sequence's sampler masks every token that cannot continue it, and ends
  // only where the grammar is complete. Null: free text. Shared, immutable.
  std::shared_ptr<const grammar::Grammar> grammar;
};

struct GrammarVocab;

// A request the engine cannot run. what() is a one-line message; problem and
// the numbers let a front end phrase it in its own terms.
class RequestError : public Error {
 public:
  enum class Problem {
    kEmptyPrompt,
    kBadToken,         // a prompt id outside the vocabulary
    kPromptTooLong,    // no room for the prompt (and one generated token, under kRefuse/kClamp)
    kNoRoomForTokens,  // kRefuse: prompt + max_tokens beyond the context
    kBadMaxTokens,
    kBadSampling,
    kBadLogprobs,
  };
  RequestError(Problem problem, const std::string& message, int64_t n_prompt = 0, int64_t n_ctx = 0)
      : Error(message), problem_(problem), n_prompt_(n_prompt), n_ctx_(n_ctx) {}
  Problem problem() const { return problem_; }
  int64_t n_prompt() const { return n_prompt_; }
  int64_t n_ctx() const { return n_ctx_; }

 private:
  Problem problem_;
  int64_t n_prompt_, n_ctx_;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;                           // natural log of the model's probability
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};

enum class ErrorKind {
  kInternal,     // something failed inside the engine
  kUnavailable,  // busy, stopping or out of time: the caller may retry
};

// What a sequence produced since its sink was last called.
struct Update {
  std::string text;                    // whole UTF-8 characters, stop strings removed
  std::vector<int32_t> tokens;         // generated ids (end-of-generation excluded)
  std::vector<TokenLogprob> logprobs;  // one per sampled token (only when asked for)
  bool done = false;
  FinishReason finish = FinishReason::kStop;
  std::string error;  // with kError: a message for the caller
  ErrorKind error_kind = ErrorKind::kInternal;
  int64_t n_prompt = 0;     // prompt tokens
  int64_t n_cached = 0;     // of them, reused from a KV cache instead of computed
  int64_t n_generated = 0;  // tokens generated so far
  // With done (milliseconds): feeding the prompt, submission to the first
  // token, first token to the end; context shifts performed.
  double prompt_ms = 0, ttft_ms = 0, gen_ms = 0;
  int64_t n_shifts = 0;
  int64_t n_drafted = 0, n_accepted = 0;  // with done: speculative draft tokens verified / accepted

  void merge(Update&& later);  // later follows this one
};

using UpdateSink = std::function<void(Update&&)>;

class Sequence {
 public:
  // Validates request for a context of n_ctx tokens and n_vocab ids (throws
  // RequestError) and builds the sampler, stop matcher and decoder.
  // grammar_vocab is needed (non-null) when the request has a grammar.
  Sequence(Request request, const tokenizer::Tokenizer& tok, int64_t n_vocab, int64_t n_ctx,
           UpdateSink sink, const std::atomic<bool>* cancel,
           std::shared_ptr<const GrammarVocab> grammar_vocab = nullptr);

  const Request& request() const { return request_; }
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }
  bool expired(Clock::time_point now) const { return now >= request_.deadline; }
  Clock::time_point created() const { return created_; }

 private:
  friend class BatchEngine;

  Request request_;
  UpdateSink sink_;
  const std::atomic<bool>* cancel_;
  int64_t
      max_tokens_;  // after the context policy; < 0: none (validated before the sampler is built)
  Sampler sampler_;
  StopMatcher stop_;
  tokenizer::StreamDecoder decoder_;
  // Tokens before prefill_end_ are fed as prompt chunks; logits are sampled
  // at its end only when sample_after_prefill_ (false after a context shift,
  // whose pending sampled token is fed next as a decoding row).
  size_t prefill_end_ = 0;
  bool sample_after_prefill_ = true;
  int64_t n_cached_ = 0;
  int64_t n_generated_ = 0;
  int64_t n_shifts_ = 0;
  int64_t n_drafted_ = 0;   // draft tokens verified (speculative decoding)
  int64_t n_accepted_ = 0;  // of them, accepted
  Clock::time_point created_, prompt_done_, first_token_, last_token_;
  bool got_first_token_ = false;
};

// Natural-log probability of id under softmax(logits) and the k most likely
// tokens (ties to the lower id). order is a sort buffer [n_vocab].
TokenLogprob logprob_of(std::span<const float> logits, int32_t id, int k,
                        std::vector<int32_t>& order);

}  // namespace slm::engine
