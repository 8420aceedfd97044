#include "engine/generator.h"

#include <algorithm>

namespace slm::engine {
namespace {

// One slot whose prompt chunks are the session's n_batch, as Session::feed
// would cut them, so a run computes exactly the rows it always did.
BatchOptions one_slot(const model::Model& model, const model::SessionOptions& so, int draft_max,
                      const model::Model* draft_model) {
  BatchOptions o;
  o.n_slots = 1;
  o.n_ctx = so.n_ctx;
  const int64_t n_ctx = so.n_ctx > 0 ? so.n_ctx : model.config().n_ctx_train;
  o.prefill_chunk = std::max<int64_t>(1, std::min(std::clamp<int64_t>(so.n_batch, 1, 4096), n_ctx));
  o.allow_beyond_train_ctx = so.allow_beyond_train_ctx;
  o.kv_type = so.kv_type;
  o.draft_max = draft_max;
  o.draft_model = draft_model;
  return o;
}

}  // namespace

Generator::Generator(const model::Model& model, const tokenizer::Tokenizer& tok, ThreadPool& pool,
                     const model::SessionOptions& session_options, int draft_max,
                     const model::Model* draft_model)
    : engine_(model, tok, one_slot(model, session_options, draft_max, draft_model), pool) {}

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& o,
                                   const std::function<void(std::string_view)>& on_text,
                                   const std::atomic<bool>* cancel) {
  Request r;
  r.prompt.tokens.assign(prompt.begin(), prompt.end());
  r.sampling = o.sampling;
  r.stops = o.stops;
  r.max_tokens = o.n_predict;
  r.context = o.context_shift ? ContextPolicy::kShift : ContextPolicy::kStop;
  r.n_keep = o.n_keep;
  r.strip_leading_space = o.strip_leading_space;
  r.adapter = o.adapter;
  r.grammar = o.grammar;

  GenerateResult res;
  Update last;
  auto sink = [&](Update&& u) {
    if (!u.text.empty()) {
      res.text += u.text;
      if (on_text) on_text(u.text);
    }
    res.tokens.insert(res.tokens.end(), u.tokens.begin(), u.tokens.end());
    if (u.done) last = std::move(u);
  };
  engine_.admit(engine_.make_sequence(std::move(r), sink, cancel));
  while (engine_.n_active() > 0) engine_.step();

  if (last.finish == FinishReason::kError) throw Error(last.error);
  res.finish = last.finish;
  res.n_prompt = last.n_prompt;
  res.n_prompt_reused = last.n_cached;
  res.prompt_ms = last.prompt_ms;
  res.gen_ms = last.gen_ms;
  res.ttft_ms = last.ttft_ms;
  res.n_shifts = last.n_shifts;
  res.n_drafted = last.n_drafted;
  res.n_accepted = last.n_accepted;
  return res;
}

}  // namespace slm::engine
