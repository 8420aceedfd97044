#include "engine/draft_model.h"

#include <algorithm>
#include <optional>
#include <string>

#include "base/error.h"

namespace slm::engine {
namespace {

std::string id_text(const std::optional<int32_t>& id) {
  return id ? std::to_string(*id) : std::string("none");
}

// The draft's sampler sees the same parameters with its own random stream
// (the target's sampler draws the accept/reject coins), and no bias for ids
// the draft model lacks.
SamplerParams draft_params(SamplerParams p, int64_t n_vocab) {
  p.seed ^= 0x9e3779b97f4a7c15ull;
  for (auto it = p.logit_bias.begin(); it != p.logit_bias.end();)
    it = it->first >= n_vocab ? p.logit_bias.erase(it) : std::next(it);
  return p;
}

model::SessionOptions draft_session(const model::Model& draft, model::SessionOptions so) {
  const int64_t train = draft.config().n_ctx_train;
  if (so.n_ctx <= 0) so.n_ctx = train;
  if (!so.allow_beyond_train_ctx) so.n_ctx = std::min(so.n_ctx, train);
  return so;
}

}  // namespace

void check_same_vocabulary(const tokenizer::Tokenizer& target, const tokenizer::Tokenizer& draft) {
  auto differ = [](const std::string& what) {
    throw Error("the draft model's tokenizer differs from the model's: " + what);
  };
  if (target.n_vocab() != draft.n_vocab())
    differ(std::to_string(draft.n_vocab()) + " tokens against " + std::to_string(target.n_vocab()));
  if (target.kind() != draft.kind())
    differ("kind " + std::string(draft.kind()) + " against " + std::string(target.kind()));
  if (target.pre() != draft.pre())
    differ("pre-tokenizer '" + std::string(draft.pre()) + "' against '" +
           std::string(target.pre()) + "'");
  const std::pair<const char*, std::optional<int32_t> (tokenizer::Tokenizer::*)() const>
      specials[] = {{"BOS", &tokenizer::Tokenizer::bos},
                    {"EOS", &tokenizer::Tokenizer::eos},
                    {"EOT", &tokenizer::Tokenizer::eot}};
  for (const auto& [name, get] : specials)
    if ((target.*get)() != (draft.*get)())
      differ(std::string(name) + " id " + id_text((draft.*get)()) + " against " +
             id_text((target.*get)()));
  for (int32_t id = 0; id < target.n_vocab(); ++id) {
    if (target.token_text(id) != draft.token_text(id))
      differ("token " + std::to_string(id) + " is '" + draft.token_text(id) + "' against '" +
             target.token_text(id) + "'");
    if (target.token_type(id) != draft.token_type(id))
      differ("token " + std::to_string(id) + " has type " +
             std::to_string(static_cast<int>(draft.token_type(id))) + " against " +
             std::to_string(static_cast<int>(target.token_type(id))));
  }
}

ModelDrafter::ModelDrafter(const model::Model& draft, const model::SessionOptions& so,
                           int64_t n_vocab)
    : model_(draft), session_(draft, draft_session(draft, so)), n_vocab_(n_vocab) {
  cached_.reserve(static_cast<size_t>(session_.n_ctx()));
}

void ModelDrafter::start(const SamplerParams& params) {
  const int64_t V = model_.config().n_vocab;
  SamplerParams p = draft_params(params, V);
  // Reuse the buffers when only the seed changes (the common case).
  if (sampler_ && p.logit_bias.empty() && sampler_->params().logit_bias.empty()) {
    SamplerParams same = sampler_->params();
    same.seed = p.seed;
    if (same.temperature == p.temperature && same.top_k == p.top_k && same.top_p == p.top_p &&
        same.min_p == p.min_p && same.repeat_penalty == p.repeat_penalty &&
        same.repeat_last_n == p.repeat_last_n && same.presence_penalty == p.presence_penalty &&
        same.frequency_penalty == p.frequency_penalty) {
      sampler_->reseed(p.seed);
      return;
    }
  }
  sampler_ = std::make_unique<Sampler>(p, V);
}

std::span<const TokenProb> ModelDrafter::q(size_t i) const {
  return i < n_q_ ? std::span<const TokenProb>(q_[i]) : std::span<const TokenProb>();
}

int64_t ModelDrafter::propose(std::vector<int32_t>& tokens, int64_t k,
                              const tokenizer::Tokenizer& tok, ThreadPool& pool) {
  n_q_ = 0;
  const int64_t n = static_cast<int64_t>(tokens.size());
  k = std::min(k,
               session_.n_ctx() - n);  // the draft's cache takes tokens and all but the last draft
  if (!sampler_ || k <= 0 || n == 0) return 0;
  // Keep the longest prefix the draft's cache shares with tokens, but feed
  // at least the last token (its logits give the first draft).
  int64_t keep = 0;
  // After a failed feed the cache may hold fewer positions than cached_ says.
  if (static_cast<int64_t>(cached_.size()) > session_.n_past())
    cached_.resize(static_cast<size_t>(session_.n_past()));
  const int64_t held = static_cast<int64_t>(cached_.size());
  while (keep < held && keep < n - 1 &&
         cached_[static_cast<size_t>(keep)] == tokens[static_cast<size_t>(keep)])
    ++keep;
  if (!session_.can_keep(keep)) keep = 0;
  session_.truncate(keep);
  cached_.resize(static_cast<size_t>(keep));
  const std::span<const int32_t> missing =
      std::span<const int32_t>(tokens).subspan(static_cast<size_t>(keep));
  session_.feed(missing, pool);
  cached_.insert(cached_.end(), missing.begin(), missing.end());
  if (q_.size() < static_cast<size_t>(k)) q_.resize(static_cast<size_t>(k));
  std::span<const float> logits = session_.last_logits();
  int64_t made = 0;
  while (made < k) {
    std::vector<TokenProb>& q = q_[static_cast<size_t>(made)];
    const int32_t id = sampler_->sample_with_distribution(logits, tokens, q);
    if (id < 0 || id >= n_vocab_ || id >= tok.n_vocab()) break;  // the target has no such token
    tokens.push_back(id);
    ++made;
    n_q_ = static_cast<size_t>(made);
    if (made == k || tok.is_eog(id)) break;
    logits = session_.decode(id, pool);
    cached_.push_back(id);
  }
  return made;
}

}  // namespace slm::engine
