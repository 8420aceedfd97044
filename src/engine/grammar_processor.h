// The grammar mask as a logits processor: the engine's adapter over the leaf
// grammar module (grammar/ knows no tokenizers or models).
//
// GrammarProcessor keeps a Matcher for one sequence. On each apply() it first
// feeds the tokens appended to the history since the last call (the first call
// takes the history as the prompt and feeds nothing), then sets the logit of
// every token whose bytes cannot continue the grammar to -inf. End-of-
// generation tokens are allowed exactly when the output so far is complete.
// A fed token the grammar rejects (the sampler was bypassed) throws slm::Error.
//
// Cost per step: one trie walk or cache hit (token_mask.h) plus O(n_vocab) to
// apply the bitset. Unlike the other processors this one allocates: the
// matcher's arena and the mask caches (bounded, 32 entries each) grow while
// warming up; the logits row itself is never reallocated.
// Ownership / thread-safety: per sequence, one thread at a time; the grammar,
// trie and token bytes are immutable and shared between sequences (the trie's
// loop views, built on first use, are shared too, behind its own mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/logits_processor.h"
#include "grammar/grammar.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"

namespace slm::tokenizer {
class Tokenizer;
}

namespace slm::engine {

// What the grammar sees of a vocabulary: each token's bytes [n_vocab]; control,
// unknown and unused tokens are empty (never allowed by a mask).
std::vector<std::string> grammar_token_bytes(const tokenizer::Tokenizer& tok);

// Everything a GrammarProcessor shares with its siblings: build once per
// (vocabulary, grammar) and hand to each sequence.
struct GrammarVocab {
  std::vector<std::string> bytes;      // [n_vocab]
  std::vector<int32_t> eog;            // end-of-generation ids
  grammar::TokenTrie trie;
  GrammarVocab(std::vector<std::string> token_bytes, std::vector<int32_t> eog_ids)
      : bytes(std::move(token_bytes)), eog(std::move(eog_ids)), trie(bytes) {}
};

class GrammarProcessor final : public LogitsProcessor {
 public:
  GrammarProcessor(std::shared_ptr<const grammar::Grammar> g, std::shared_ptr<const GrammarVocab> vocab);
  void apply(std::span<float> logits, std::span<const int32_t> history) override;
  // Feeds the new history tokens and computes the mask for the next apply()
  // with the same history (so a batch computes its masks in parallel).
  void prepare(std::span<const int32_t> history) override;
  bool has_prepare() const override { return true; }
  bool is_complete() const { return matcher_.is_complete(); }

 private:
  void feed(int32_t id);
  void advance(std::span<const int32_t> history);  // feed + mask; throws

  std::shared_ptr<const GrammarVocab> vocab_;
  grammar::Matcher matcher_;
  grammar::MaskComputer masks_;
  std::vector<uint64_t> mask_;  // [ceil(n_vocab / 64)]
  std::vector<float> eog_logits_;  // [eog ids], the model's logits kept while masking
  size_t consumed_ = 0;         // history tokens already fed
  bool started_ = false;
  bool ended_ = false;          // an end-of-generation token was fed
  size_t prepared_for_ = SIZE_MAX;  // history length the mask was computed for
  std::string prepare_error_;       // what prepare() caught, thrown by apply()
};

}  // namespace slm::engine
