#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "base/error.h"
#include "engine/stop.h"

namespace slm::engine {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kEndOfText:
    case FinishReason::kStopString: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kContextFull: return "context_full";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "stop";
}

Generator::Generator(const model::Model& model, const tokenizer::Tokenizer& tok, ThreadPool& pool,
                     const model::SessionOptions& session_options)
    : model_(model), tok_(tok), pool_(pool), session_(model, session_options) {}

void Generator::reset() {
  session_.reset();
  history_.clear();
}

int64_t Generator::sync_prompt(std::span<const int32_t> prompt) {
  size_t common = 0;
  while (common < history_.size() && common < prompt.size() && history_[common] == prompt[common]) ++common;
  // At least one token must be fed to get fresh logits for the next choice.
  if (common == prompt.size() && common > 0) --common;
  session_.truncate(static_cast<int64_t>(common));
  history_.resize(common);
  const std::span<const int32_t> rest = prompt.subspan(common);
  session_.feed(rest, pool_);
  history_.insert(history_.end(), rest.begin(), rest.end());
  return static_cast<int64_t>(common);
}

void Generator::shift_context(int64_t n_keep) {
  // Keep the first n_keep tokens, drop half of the rest, and recompute the
  // survivors at their new positions (RoPE positions change).
  const int64_t n = static_cast<int64_t>(history_.size());
  n_keep = std::clamp<int64_t>(n_keep, 0, n - 2);
  const int64_t n_discard = std::max<int64_t>(1, (n - n_keep) / 2);
  std::vector<int32_t> kept(history_.begin(), history_.begin() + n_keep);
  kept.insert(kept.end(), history_.begin() + n_keep + n_discard, history_.end());
  session_.truncate(0);
  history_.clear();
  session_.feed(kept, pool_);
  history_ = std::move(kept);
}

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& o,
                                   const std::function<void(std::string_view)>& on_text,
                                   const std::atomic<bool>* cancel) {
  if (prompt.empty()) throw Error("the prompt is empty (no tokens and no BOS)");
  if (static_cast<int64_t>(prompt.size()) > session_.n_ctx())
    throw Error("the prompt is " + std::to_string(prompt.size()) + " tokens, longer than the context of " +
                std::to_string(session_.n_ctx()) + " (raise it with --ctx-size)");
  for (const int32_t id : prompt)
    if (id < 0 || id >= model_.config().n_vocab) throw Error("token id " + std::to_string(id) + " is out of range");

  GenerateResult res;
  res.n_prompt = static_cast<int64_t>(prompt.size());
  const auto t0 = Clock::now();
  res.n_prompt_reused = sync_prompt(prompt);
  res.prompt_ms = ms_since(t0);

  Sampler sampler(o.sampling, model_.config().n_vocab);
  StopMatcher stop(o.stops);
  tokenizer::DecodeOptions dopt;
  dopt.render_special = false;
  // A continuation of text keeps its leading space; text started from BOS
  // alone drops the space SentencePiece puts before the first word.
  dopt.strip_space_prefix = o.strip_leading_space;
  tokenizer::StreamDecoder decoder(tok_, dopt);
  auto emit = [&](std::string_view text) {
    if (text.empty()) return;
    res.text.append(text);
    if (on_text) on_text(text);
  };

  // Room for every token this call can make, so the token loop does not
  // grow these (context shifts keep the count within n_ctx).
  const int64_t room = session_.n_ctx() - session_.n_past() + 1;
  const int64_t most = o.n_predict >= 0 ? std::min<int64_t>(o.n_predict, room) : room;
  res.tokens.reserve(static_cast<size_t>(std::max<int64_t>(most, 0)));
  history_.reserve(static_cast<size_t>(session_.n_ctx()) + 1);

  Clock::time_point t_first;
  res.finish = FinishReason::kLength;
  for (int64_t i = 0; o.n_predict < 0 || i < o.n_predict; ++i) {
    if (cancel && cancel->load(std::memory_order_relaxed)) {
      res.finish = FinishReason::kCancelled;
      break;
    }
    const int32_t id = sampler.sample(session_.last_logits(), history_);
    if (i == 0) {
      t_first = Clock::now();
      res.ttft_ms = ms_since(t0);
    }
    if (tok_.is_eog(id)) {
      res.finish = FinishReason::kEndOfText;
      break;
    }
    res.tokens.push_back(id);
    emit(stop.feed(decoder.push(id)));
    if (stop.stopped()) {
      res.finish = FinishReason::kStopString;
      break;
    }
    if (o.n_predict >= 0 && i + 1 >= o.n_predict) break;  // no need to feed the last token
    if (session_.n_past() >= session_.n_ctx()) {
      if (!o.context_shift) {
        res.finish = FinishReason::kContextFull;
        break;
      }
      shift_context(o.n_keep);
      ++res.n_shifts;
    }
    session_.decode(id, pool_);
    history_.push_back(id);
  }
  if (!stop.stopped()) {
    emit(stop.feed(decoder.flush()));
    emit(stop.finish());
  }
  if (!res.tokens.empty()) res.gen_ms = ms_since(t_first);
  return res;
}

}  // namespace slm::engine
