// Speculative decoding with a small draft model of the same vocabulary: per
// slot, a ModelDrafter keeps the draft model's own KV cache in step with the
// sequence and proposes the next tokens one draft forward at a time, each
// drawn from the draft's distribution q under the request's sampling
// parameters (greedy: its argmax, a point mass). The batch engine verifies
// the proposals in one target forward and accepts each with min(1, p / q)
// (Sampler::sample_draft), so output keeps the target's distribution.
//
// Ownership: a ModelDrafter borrows the draft model (which outlives it) and
// owns its Session, sampler and buffers. Thread-safety: one thread drives it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/sampler.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace slm {
class ThreadPool;
}

namespace slm::engine {

// Throws slm::Error naming the first difference when the draft model's
// tokenizer (draft) is not the target's (target): size, kind, special ids,
// a token's text or type. Token ids must mean the same in both models.
void check_same_vocabulary(const tokenizer::Tokenizer& target, const tokenizer::Tokenizer& draft);

class ModelDrafter {
 public:
  // so: the target slot's options (n_ctx, n_batch, kv_type, long-context
  // permission); the draft's context is capped at its training length unless
  // long contexts are allowed. n_vocab: ids the target accepts (drafts stop
  // before a larger id).
  ModelDrafter(const model::Model& draft, const model::SessionOptions& so, int64_t n_vocab);

  // Starts a new sequence (another request in the slot): a fresh sampler with
  // params (its own seed, derived from the request's).
  void start(const SamplerParams& params);
  // Appends up to k drafts to tokens (the sequence so far; its last token is
  // not in the target's cache yet) and returns how many; q(i) is then the
  // distribution draft i was drawn from. Stops after an end-of-generation
  // token. Feeds the draft's cache what it lacks of tokens (the longest
  // common prefix is kept, so rejected drafts and context shifts only cost
  // the tokens after the divergence). tokens must have capacity for k more.
  int64_t propose(std::vector<int32_t>& tokens, int64_t k, const tokenizer::Tokenizer& tok,
                  ThreadPool& pool);
  std::span<const TokenProb> q(size_t i) const;

  int64_t n_ctx() const { return session_.n_ctx(); }
  size_t cache_bytes() const { return session_.cache_bytes(); }

 private:
  const model::Model& model_;
  model::Session session_;
  int64_t n_vocab_ = 0;
  std::unique_ptr<Sampler> sampler_;       // per sequence (start)
  std::vector<int32_t> cached_;            // the tokens in session_'s cache, in order
  std::vector<std::vector<TokenProb>> q_;  // [draft_max] distributions, reused
  size_t n_q_ = 0;
};

}  // namespace slm::engine
