#include "engine/sequence.h"

#include "engine/grammar_processor.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace slm::engine {
namespace {

using Problem = RequestError::Problem;

// Checks what does not depend on the sampler; returns max_tokens after the
// context policy (< 0: no limit).
int64_t checked_max_tokens(const Request& r, int64_t n_vocab, int64_t n_ctx) {
  const int64_t n_prompt = static_cast<int64_t>(r.prompt.tokens.size());
  if (n_prompt == 0) throw RequestError(Problem::kEmptyPrompt, "the prompt is empty");
  for (const int32_t id : r.prompt.tokens)
    if (id < 0 || id >= n_vocab)
      throw RequestError(Problem::kBadToken, "token id " + std::to_string(id) +
                                                 " is outside the vocabulary (0.." +
                                                 std::to_string(n_vocab - 1) + ")");
  if (r.top_logprobs > 20)
    throw RequestError(Problem::kBadLogprobs, "top_logprobs must be at most 20");
  const std::string prompt_is = "the prompt is " + std::to_string(n_prompt) + " tokens, ";
  switch (r.context) {
    case ContextPolicy::kRefuse:
    case ContextPolicy::kClamp: {
      const bool clamp = r.context == ContextPolicy::kClamp;
      if (r.max_tokens == 0 || (r.max_tokens < 0 && !clamp))
        throw RequestError(Problem::kBadMaxTokens, "max_tokens must be at least 1");
      // At least one token must be generated, so the prompt leaves one position.
      if (n_prompt > n_ctx - 1)
        throw RequestError(
            Problem::kPromptTooLong,
            prompt_is + "leaving no room in the context of " + std::to_string(n_ctx) + " tokens",
            n_prompt, n_ctx);
      const int64_t room = n_ctx - n_prompt;
      if (clamp) return r.max_tokens < 0 ? room : std::min(r.max_tokens, room);
      if (r.max_tokens > room)
        throw RequestError(Problem::kNoRoomForTokens,
                           "the prompt (" + std::to_string(n_prompt) +
                               " tokens) plus max_tokens (" + std::to_string(r.max_tokens) +
                               ") does not fit the context of " + std::to_string(n_ctx) + " tokens",
                           n_prompt, n_ctx);
      return r.max_tokens;
    }
    case ContextPolicy::kStop:
    case ContextPolicy::kShift:
      if (n_prompt > n_ctx)
        throw RequestError(Problem::kPromptTooLong,
                           prompt_is + "longer than the context of " + std::to_string(n_ctx),
                           n_prompt, n_ctx);
      if (r.n_keep < 0) throw RequestError(Problem::kBadMaxTokens, "n_keep cannot be negative");
      return r.max_tokens;  // 0: feed the prompt, generate nothing
  }
  return r.max_tokens;
}

Sampler make_sampler(const SamplerParams& params, int64_t n_vocab) {
  try {
    return Sampler(params, n_vocab);
  } catch (const RequestError&) {
    throw;
  } catch (const Error& e) {
    throw RequestError(Problem::kBadSampling, e.what());
  }
}

tokenizer::DecodeOptions decode_options(const Request& r) {
  tokenizer::DecodeOptions o;
  o.render_special = false;
  // A continuation keeps its leading space; text started from BOS alone drops
  // the space SentencePiece puts before the first word.
  o.strip_space_prefix = r.strip_leading_space;
  return o;
}

}  // namespace

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContextFull:
      return "context_full";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "stop";
}

size_t shared_prefix(const CacheKey& cached, size_t n_cached, const CacheKey& wanted) {
  if (cached.adapter != wanted.adapter) return 0;
  const size_t n = std::min({n_cached, cached.tokens.size(), wanted.tokens.size()});
  size_t i = 0;
  while (i < n && cached.tokens[i] == wanted.tokens[i]) ++i;
  return i;
}

void Update::merge(Update&& later) {
  text += later.text;
  tokens.insert(tokens.end(), later.tokens.begin(), later.tokens.end());
  logprobs.insert(logprobs.end(), std::make_move_iterator(later.logprobs.begin()),
                  std::make_move_iterator(later.logprobs.end()));
  done = later.done;
  finish = later.finish;
  if (!later.error.empty()) error = std::move(later.error);
  error_kind = later.error_kind;
  n_prompt = later.n_prompt;
  n_cached = later.n_cached;
  n_generated = later.n_generated;
  prompt_ms = later.prompt_ms;
  ttft_ms = later.ttft_ms;
  gen_ms = later.gen_ms;
  n_shifts = later.n_shifts;
  n_drafted = later.n_drafted;
  n_accepted = later.n_accepted;
}

Sequence::Sequence(Request request, const tokenizer::Tokenizer& tok, int64_t n_vocab, int64_t n_ctx,
                   UpdateSink sink, const std::atomic<bool>* cancel,
                   std::shared_ptr<const GrammarVocab> grammar_vocab)
    : request_(std::move(request)),
      sink_(std::move(sink)),
      cancel_(cancel),
      max_tokens_(checked_max_tokens(request_, n_vocab, n_ctx)),
      sampler_(make_sampler(request_.sampling, n_vocab)),
      stop_(request_.stops),
      decoder_(tok, decode_options(request_)),
      prefill_end_(request_.prompt.tokens.size()),
      created_(Clock::now()) {
  if (request_.grammar) {
    if (!grammar_vocab) throw Error("internal: a grammar request without the vocabulary's trie");
    sampler_.add_processor(std::make_unique<GrammarProcessor>(request_.grammar, std::move(grammar_vocab)));
  }
}

TokenLogprob logprob_of(std::span<const float> logits, int32_t id, int k,
                        std::vector<int32_t>& order) {
  float mx = -std::numeric_limits<float>::infinity();
  for (const float l : logits) mx = std::max(mx, l);
  double sum = 0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  TokenLogprob out;
  out.id = id;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(id)] - lse);
  if (k > 0) {
    order.resize(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t m = std::min(order.size(), static_cast<size_t>(k));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(m), order.end(),
                      [&](int32_t a, int32_t b) {
                        const float la = logits[static_cast<size_t>(a)],
                                    lb = logits[static_cast<size_t>(b)];
                        return la > lb || (la == lb && a < b);
                      });
    for (size_t i = 0; i < m; ++i)
      out.top.emplace_back(order[i],
                           static_cast<float>(logits[static_cast<size_t>(order[i])] - lse));
  }
  return out;
}

}  // namespace slm::engine
