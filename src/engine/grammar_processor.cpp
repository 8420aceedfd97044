// GrammarProcessor (grammar_processor.h).
#include "engine/grammar_processor.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {

std::vector<std::string> grammar_token_bytes(const tokenizer::Tokenizer& tok) {
  std::vector<std::string> out(static_cast<size_t>(tok.n_vocab()));
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const auto type = tok.token_type(id);
    if (type == tokenizer::TokenType::kControl || type == tokenizer::TokenType::kUnknown ||
        type == tokenizer::TokenType::kUnused)
      continue;
    out[static_cast<size_t>(id)] = tok.token_to_piece(id, /*render_special=*/false);
  }
  return out;
}

GrammarProcessor::GrammarProcessor(std::shared_ptr<const grammar::Grammar> g,
                                   std::shared_ptr<const GrammarVocab> vocab)
    : vocab_(std::move(vocab)), matcher_(std::move(g)), masks_(vocab_->trie) {
  mask_.resize((vocab_->bytes.size() + 63) / 64);
  eog_logits_.resize(vocab_->eog.size());
}

void GrammarProcessor::feed(int32_t id) {
  if (ended_) return;
  if (std::find(vocab_->eog.begin(), vocab_->eog.end(), id) != vocab_->eog.end()) {
    if (!matcher_.is_complete()) throw Error("grammar: end of generation before the output is complete");
    ended_ = true;
    return;
  }
  if (id < 0 || static_cast<size_t>(id) >= vocab_->bytes.size())
    throw Error("grammar: token id " + std::to_string(id) + " is out of range");
  const std::string& b = vocab_->bytes[static_cast<size_t>(id)];
  if (b.empty() || matcher_.accept(b) != b.size())
    throw Error("grammar: token " + std::to_string(id) + " does not continue the grammar");
}

void GrammarProcessor::advance(std::span<const int32_t> history) {
  if (!started_) {
    started_ = true;
    consumed_ = history.size();
  }
  for (; consumed_ < history.size(); ++consumed_) feed(history[consumed_]);
  if (!ended_) masks_.compute(matcher_, mask_);
  prepared_for_ = history.size();
}

void GrammarProcessor::prepare(std::span<const int32_t> history) {
  try {
    advance(history);
  } catch (const std::exception& e) {
    prepare_error_ = e.what();
    prepared_for_ = history.size();
  }
}

void GrammarProcessor::apply(std::span<float> logits, std::span<const int32_t> history) {
  if (prepared_for_ != history.size()) advance(history);
  prepared_for_ = SIZE_MAX;
  if (!prepare_error_.empty()) {
    std::string e = std::move(prepare_error_);
    prepare_error_.clear();
    throw Error(e);
  }
  constexpr float kBan = -std::numeric_limits<float>::infinity();
  if (ended_) {
    std::fill(logits.begin(), logits.end(), kBan);
    return;
  }
  const size_t n = std::min(logits.size(), vocab_->bytes.size());
  const bool complete = matcher_.is_complete();
  for (size_t k = 0; k < vocab_->eog.size(); ++k) {
    const int32_t id = vocab_->eog[k];
    eog_logits_[k] = id >= 0 && static_cast<size_t>(id) < n ? logits[static_cast<size_t>(id)] : kBan;
  }
  for (size_t i = 0; i < n; ++i)
    if (!((mask_[i >> 6] >> (i & 63)) & 1)) logits[i] = kBan;
  for (size_t i = n; i < logits.size(); ++i) logits[i] = kBan;
  for (size_t k = 0; k < vocab_->eog.size(); ++k) {
    const int32_t id = vocab_->eog[k];
    if (id >= 0 && static_cast<size_t>(id) < n) logits[static_cast<size_t>(id)] = complete ? eog_logits_[k] : kBan;
  }
}

}  // namespace slm::engine
