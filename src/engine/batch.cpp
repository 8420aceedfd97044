#include "engine/batch.h"

#include <algorithm>

#include "base/check.h"
#include "base/thread_pool.h"
#include "engine/draft_model.h"
#include "engine/grammar_processor.h"
#include "model/model.h"

namespace slm::engine {
namespace {

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int64_t checked_rows(const model::Model& model, const tokenizer::Tokenizer& tok,
                     const BatchOptions& o) {
  if (o.n_slots < 1 || o.n_slots > 256) throw Error("--parallel must be between 1 and 256");
  if (o.prefill_chunk < 1 || o.prefill_chunk > 8192)
    throw Error("the prefill chunk must be between 1 and 8192 tokens");
  if (tok.n_vocab() > model.config().n_vocab)
    throw Error("the tokenizer has " + std::to_string(tok.n_vocab()) +
                " tokens but the model only " + std::to_string(model.config().n_vocab));
  if (o.draft_max < 0 || o.draft_max > 32)
    throw Error("the draft length must be between 0 and 32 tokens");
  return o.n_slots * (1 + static_cast<int64_t>(o.draft_max)) + o.prefill_chunk;
}

}  // namespace

struct BatchEngine::Slot {
  std::unique_ptr<model::Session> session;
  // The sequence: prompt, then generated tokens. The first session->n_past()
  // are in the KV cache; while generating, the last one is the token sampled
  // but not fed yet. Kept after the sequence ends, for prefix reuse.
  CacheKey key;
  std::unique_ptr<Sequence> seq;  // null: free
  uint64_t order = 0;             // admission tick
  uint64_t admitted_step = 0;     // BatchEngine::steps_ at admission

  bool busy() const { return seq != nullptr; }
  size_t n_past() const { return static_cast<size_t>(session->n_past()); }
  bool prefilling() const { return n_past() < seq->prefill_end_; }
  // This step's next-token logits [n_vocab]: the slot's row of the engine's
  // step_logits_, where forward writes them (set while the step is built).
  const float* row = nullptr;

  // Speculative decoding (BatchOptions::draft_max): the logits of a drafted
  // step's rows [draft_max + 1][n_vocab] (made on first use), the drafts, and
  // the adaptive draft length with its back-off after repeated misses.
  std::vector<float> draft_logits;
  std::vector<int32_t> draft;
  std::vector<int32_t> drawn;
  int64_t draft_len = 4;
  int misses = 0;  // drafted steps in a row that accepted nothing
  int pause = 0;   // steps left without drafting
  // With BatchOptions::draft_model: the draft model's state for this slot,
  // started for the sequence admitted at tick drafter_order.
  std::unique_ptr<ModelDrafter> drafter;
  uint64_t drafter_order = 0;
  // Measured speed of this sequence's steps (tokens per second, moving
  // averages), plain and drafted (the draft's own time included): drafting
  // pauses while it is slower, so it never costs more than a probe now and
  // then. Reset for every sequence (rates_order: its admission tick).
  double plain_rate = 0, draft_rate = 0;
  double propose_s = 0;  // time spent drafting for the current step
  uint64_t rates_order = 0;
  // This step's plain draw (step() runs them in parallel before the
  // sequential emits): the token when drawn, else why the sampler failed.
  bool draw_ok = false;
  int32_t drawn_id = 0;
  std::string draw_error;
};

BatchEngine::BatchEngine(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
                         const BatchOptions& options, ThreadPool& pool, EngineObserver* observer)
    : model_(model),
      tokenizer_(tokenizer),
      pool_(pool),
      observer_(observer),
      scratch_(model.config(), checked_rows(model, tokenizer, options)) {
  prefill_chunk_ = options.prefill_chunk;
  draft_max_ = options.draft_max;
  draft_by_speed_ = options.draft_by_speed;
  model::SessionOptions so;
  so.n_ctx = options.n_ctx;
  so.n_batch = options.prefill_chunk;
  so.allow_beyond_train_ctx = options.allow_beyond_train_ctx;
  so.kv_type = options.kv_type;
  if (options.draft_model != nullptr && options.draft_max > 0)
    check_same_vocabulary(tokenizer, tokenizer::Tokenizer::from_gguf(options.draft_model->file()));
  for (int i = 0; i < options.n_slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->session = std::make_unique<model::Session>(model, so);
    if (options.prefault_kv) slot->session->prefault();
    if (options.draft_model != nullptr && options.draft_max > 0)
      slot->drafter = std::make_unique<ModelDrafter>(*options.draft_model, so, n_vocab());
    // Room for a whole context and the one sampled token past it, so the
    // token loop never grows it.
    slot->key.tokens.reserve(static_cast<size_t>(slot->session->n_ctx()) + 1);
    slots_.push_back(std::move(slot));
  }
  n_ctx_ = slots_.front()->session->n_ctx();
  chunks_.reserve(slots_.size());
  prepare_.reserve(slots_.size());
  draws_.reserve(slots_.size());
  step_logits_.resize(slots_.size() * static_cast<size_t>(n_vocab()));
  chunk_slots_.reserve(slots_.size());
  chunk_drafts_.reserve(slots_.size());
  order_.reserve(slots_.size());
}

BatchEngine::~BatchEngine() = default;

int64_t BatchEngine::n_vocab() const {
  return model_.config().n_vocab;
}

int64_t BatchEngine::kv_bytes() const {
  size_t n = 0;
  for (const auto& s : slots_) n += s->session->cache_bytes();
  return static_cast<int64_t>(n);
}

int BatchEngine::n_active() const {
  int n = 0;
  for (const auto& s : slots_) n += s->busy() ? 1 : 0;
  return n;
}

KvUse BatchEngine::kv_use() const {
  KvUse k;
  for (const auto& s : slots_) (s->busy() ? k.active : k.cached) += s->session->n_past();
  return k;
}

std::span<const int32_t> BatchEngine::cached_tokens(int slot) const {
  const Slot& s = *slots_.at(static_cast<size_t>(slot));
  return std::span<const int32_t>(s.key.tokens).first(s.n_past());
}

void BatchEngine::clear_cache() {
  for (auto& s : slots_) {
    if (s->busy()) continue;
    s->session->reset();
    s->key.tokens.clear();
    s->key.adapter = 0;
  }
}

std::unique_ptr<Sequence> BatchEngine::make_sequence(Request request, UpdateSink sink,
                                                     const std::atomic<bool>* cancel) const {
  // The cache key follows the adapter, whatever the caller set.
  request.prompt.adapter = request.adapter ? request.adapter->id() : 0;
  std::shared_ptr<const GrammarVocab> vocab;
  if (request.grammar) vocab = grammar_vocab();
  return std::make_unique<Sequence>(std::move(request), tokenizer_, n_vocab(), n_ctx_,
                                    std::move(sink), cancel, std::move(vocab));
}

std::shared_ptr<const GrammarVocab> BatchEngine::grammar_vocab() const {
  std::lock_guard<std::mutex> lock(vocab_mutex_);
  if (!grammar_vocab_)
    grammar_vocab_ =
        std::make_shared<const GrammarVocab>(grammar_token_bytes(tokenizer_), tokenizer_.eog_ids());
  return grammar_vocab_;
}

void BatchEngine::admit(std::unique_ptr<Sequence> seq) {
  const CacheKey& want = seq->request_.prompt;
  // The free slot whose cache shares the longest prefix with the prompt; among
  // equals the least recently used, so popular prefixes stay cached longest.
  Slot* best = nullptr;
  size_t best_cp = 0;
  for (auto& s : slots_) {
    if (s->busy()) continue;
    const size_t cp = shared_prefix(s->key, s->n_past(), want);
    if (best == nullptr || cp > best_cp || (cp == best_cp && s->order < best->order)) {
      best = s.get();
      best_cp = cp;
    }
  }
  if (best == nullptr) throw Error("internal: no free slot for a new sequence");
  // A longer shared prefix in another slot (running or idle) is copied over:
  // copying cache rows is far cheaper than recomputing them.
  Slot* donor = nullptr;
  size_t donor_cp = best_cp;
  for (auto& s : slots_) {
    if (s.get() == best) continue;
    const size_t cp = shared_prefix(s->key, s->n_past(), want);
    if (cp > donor_cp) {
      donor = s.get();
      donor_cp = cp;
    }
  }
  // At least one prompt token is always fed, to get logits for the first choice.
  const size_t limit = want.tokens.size() - 1;
  size_t reuse = std::min(best_cp, limit);
  // A window-only layer keeps only its last positions: a prefix cut too far
  // back has lost the window its next token reads, and is recomputed.
  if (!best->session->can_keep(static_cast<int64_t>(reuse))) reuse = 0;
  const size_t donor_reuse = std::min(donor_cp, limit);
  if (donor != nullptr && donor_reuse > reuse &&
      donor->session->can_keep(static_cast<int64_t>(donor_reuse))) {
    reuse = donor_reuse;
    best->session->copy_prefix(*donor->session, static_cast<int64_t>(reuse));
  } else {
    best->session->truncate(static_cast<int64_t>(reuse));
  }

  Slot& slot = *best;
  slot.key.tokens.assign(want.tokens.begin(), want.tokens.end());
  slot.key.adapter = want.adapter;
  seq->n_cached_ = static_cast<int64_t>(reuse);
  seq->prefill_end_ = want.tokens.size();
  seq->sample_after_prefill_ = true;
  slot.order = ++tick_;
  slot.admitted_step = steps_;
  slot.seq = std::move(seq);
  if (observer_) {
    observer_->on_admitted(seconds(slot.seq->created_, Clock::now()));
    observer_->on_prompt(static_cast<int64_t>(slot.key.tokens.size()), slot.seq->n_cached_);
  }
}

Update BatchEngine::progress(const Slot& slot) const {
  Update u;
  u.n_prompt = static_cast<int64_t>(slot.seq->request_.prompt.tokens.size());
  u.n_cached = slot.seq->n_cached_;
  u.n_generated = slot.seq->n_generated_;
  return u;
}

void BatchEngine::finish(Slot& slot, FinishReason why, Update u, std::string error,
                         ErrorKind kind) {
  Sequence& q = *slot.seq;
  if (why != FinishReason::kError) {
    // Release what the decoder and stop matcher still hold back.
    const std::string held = q.decoder_.flush();
    u.text += q.stop_.feed(held);
    u.text += q.stop_.finish();
  }
  Update head = progress(slot);
  u.n_prompt = head.n_prompt;
  u.n_cached = head.n_cached;
  u.n_generated = head.n_generated;
  u.done = true;
  u.finish = why;
  u.error = std::move(error);
  u.error_kind = kind;
  const auto now = Clock::now();
  if (q.got_first_token_) {
    u.prompt_ms = ms(q.created_, q.prompt_done_);
    u.ttft_ms = ms(q.created_, q.first_token_);
    if (q.n_generated_ > 0) u.gen_ms = ms(q.first_token_, now);
  } else if (q.prompt_done_ != Clock::time_point{}) {
    u.prompt_ms = ms(q.created_, q.prompt_done_);
  }
  u.n_shifts = q.n_shifts_;
  // Free the slot before telling the caller, so a caller that sees the end
  // also sees the slot free. What stays in the cache is reusable history.
  u.n_drafted = q.n_drafted_;
  u.n_accepted = q.n_accepted_;
  const std::unique_ptr<Sequence> seq = std::move(slot.seq);
  // A drafted step that ended early holds draft rows past the last emitted token.
  if (slot.n_past() > slot.key.tokens.size())
    slot.session->truncate(static_cast<int64_t>(slot.key.tokens.size()));
  slot.key.tokens.resize(slot.n_past());
  seq->sink_(std::move(u));
}

void BatchEngine::end(Slot& slot, Update&& u, FinishReason why) {
  // Logprobs of the last token travel in their own update just before the end.
  if (!u.logprobs.empty()) {
    Update head = progress(slot);
    head.logprobs = std::move(u.logprobs);
    u.logprobs.clear();
    slot.seq->sink_(std::move(head));
  }
  finish(slot, why, std::move(u));
}

void BatchEngine::fail_all(const std::string& error, ErrorKind kind, bool drop_caches) {
  for (auto& s : slots_) {
    if (!s->busy()) continue;
    if (drop_caches) s->session->reset();
    finish(*s, FinishReason::kError, {}, error, kind);
  }
}

void BatchEngine::step() {
  const auto now = Clock::now();
  for (auto& s : slots_) {
    if (!s->busy()) continue;
    if (s->seq->cancelled())
      finish(*s, FinishReason::kCancelled);
    else if (s->seq->expired(now))
      s->prefilling() ? finish(*s, FinishReason::kError, {},
                               "timed out before the prompt was processed", ErrorKind::kUnavailable)
                      : finish(*s, FinishReason::kLength);
  }

  // Decoding rows first, so running streams never wait behind a long prompt;
  // the prompt budget then goes to waiting prompts in arrival order.
  chunks_.clear();
  n_rows_ = 0;
  chunk_slots_.clear();
  chunk_drafts_.clear();
  order_.clear();
  for (auto& s : slots_) {
    if (!s->busy()) continue;
    if (s->prefilling()) {
      order_.push_back(s.get());
      continue;
    }
    const int64_t k = propose(*s);
    if (k == 0) {
      chunks_.push_back({s->session.get(), std::span<const int32_t>(&s->key.tokens.back(), 1),
                         next_row(*s), false});
      chunks_.back().keep_last = false;
    } else {  // the last token and its drafts, logits for every row
      chunks_.push_back({s->session.get(),
                         std::span<const int32_t>(s->key.tokens).last(static_cast<size_t>(k) + 1),
                         s->draft_logits.data(), true});
    }
    chunks_.back().adapter = s->seq->request_.adapter.get();
    chunk_slots_.push_back(s.get());
    chunk_drafts_.push_back(k);
  }
  // Prefill order: least remaining prompt first, less a prefill budget of
  // credit per step waited, admission order among equals. A short prompt
  // arriving behind a long one gets its first token within a step or two
  // instead of after the whole long prompt, and the credit bounds any wait:
  // a prompt of R tokens is first in line after R / prefill_chunk steps.
  // Prompts of one length (a burst of equal requests) keep arrival order.
  ++steps_;
  const auto key = [&](const Slot* s) {
    const auto remaining = static_cast<int64_t>(s->seq->prefill_end_ - s->n_past());
    return remaining - prefill_chunk_ * static_cast<int64_t>(steps_ - s->admitted_step);
  };
  std::sort(order_.begin(), order_.end(), [&](const Slot* a, const Slot* b) {
    const int64_t ka = key(a), kb = key(b);
    return ka != kb ? ka < kb : a->order < b->order;
  });
  int64_t budget = prefill_chunk_;
  for (Slot* s : order_) {
    if (budget <= 0) break;
    const size_t past = s->n_past();
    const size_t end = s->seq->prefill_end_;
    const size_t n = std::min(static_cast<size_t>(budget), end - past);
    const bool wants_logits = past + n == end && s->seq->sample_after_prefill_;
    chunks_.push_back({s->session.get(), std::span<const int32_t>(s->key.tokens).subspan(past, n),
                       wants_logits ? next_row(*s) : nullptr, false});
    chunks_.back().keep_last = false;
    chunks_.back().adapter = s->seq->request_.adapter.get();
    chunk_slots_.push_back(s);
    chunk_drafts_.push_back(0);
    budget -= static_cast<int64_t>(n);
  }
  if (chunks_.empty()) return;
  if (observer_) {
    int64_t rows = 0;
    for (const model::SeqChunk& c : chunks_) rows += static_cast<int64_t>(c.tokens.size());
    observer_->on_batch(static_cast<int64_t>(chunks_.size()), rows);
  }

  const auto t0 = Clock::now();
  try {
    model::forward(model_, chunks_, scratch_, pool_);
    if (observer_ && model_.prune().sparsity)
      observer_->on_pruned(scratch_.prune_stats().zeroed, scratch_.prune_stats().total);
  } catch (const std::exception& e) {
    // A failed step leaves the caches of its sequences undefined: drop them.
    for (size_t i = 0; i < chunk_slots_.size(); ++i) {
      Slot* s = chunk_slots_[i];
      s->key.tokens.resize(s->key.tokens.size() - static_cast<size_t>(chunk_drafts_[i]));
      s->session->reset();
      finish(*s, FinishReason::kError, {}, std::string("internal error: ") + e.what());
    }
    return;
  }
  step_s_ = seconds(t0, Clock::now());  // the forward pass, for the drafting rates
  // Constraint masks (a grammar per sequence) depend on the history only:
  // compute them for every sampling sequence at once on the pool, so one slow
  // schema does not hold up the others' share of the step.
  prepare_.clear();
  for (size_t i = 0; i < chunks_.size(); ++i)
    if (chunks_[i].logits != nullptr && chunk_slots_[i]->seq->max_tokens_ != 0 &&
        chunk_slots_[i]->seq->sampler_.has_prepare())
      prepare_.push_back(chunk_slots_[i]);
  if (prepare_.size() > 1)
    pool_.parallel_for(static_cast<int64_t>(prepare_.size()), [&](int64_t k, int) {
      Slot& s = *prepare_[static_cast<size_t>(k)];
      s.seq->sampler_.prepare(s.key.tokens);
    });
  // The plain draws before any emit: each reads its own row of n_vocab logits
  // and touches only its own sampler (its random state included), so the
  // tokens do not depend on the order; with 16 sequences that is 16 scans of
  // 150k logits, which the other threads would otherwise wait through. Those
  // with a constraint (a grammar) draw on this thread: their masks read
  // shared state that only prepare() above is known to read in parallel.
  draws_.clear();
  for (size_t i = 0; i < chunks_.size(); ++i) {
    Slot* s = chunk_slots_[i];
    if (chunks_[i].logits == nullptr || chunk_drafts_[i] != 0 || s->seq->max_tokens_ == 0) continue;
    if (s->seq->sampler_.has_prepare())
      draw(*s);
    else
      draws_.push_back(s);
  }
  if (draws_.size() > 1)
    pool_.parallel_for(static_cast<int64_t>(draws_.size()),
                       [&](int64_t k, int) { draw(*draws_[static_cast<size_t>(k)]); });
  else if (draws_.size() == 1)
    draw(*draws_[0]);
  int64_t n_sampled = 0;
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (chunks_[i].logits == nullptr) continue;
    Slot& s = *chunk_slots_[i];
    if (!s.seq->got_first_token_) s.seq->prompt_done_ = Clock::now();
    if (s.seq->max_tokens_ == 0) {  // the prompt alone was asked for
      finish(s, FinishReason::kLength);
      continue;
    }
    if (chunk_drafts_[i] > 0) {
      verify(s, chunk_drafts_[i]);
    } else {
      // A decoding row (not a prompt's last) of a drafting engine: its speed is the plain rate.
      if (draft_max_ > 0 && s.seq->got_first_token_ && step_s_ > 0)
        s.plain_rate = s.plain_rate == 0 ? 1 / step_s_ : 0.7 * s.plain_rate + 0.3 / step_s_;
      sample(s);
    }
    ++n_sampled;
  }
  if (observer_) observer_->on_step(seconds(t0, Clock::now()), n_sampled);
}

float* BatchEngine::next_row(Slot& slot) {
  // One row per slot and step at most (drafted steps use their own rows).
  SLM_DCHECK_LT(n_rows_, static_cast<int64_t>(slots_.size()));
  float* row = step_logits_.data() + n_rows_++ * n_vocab();
  slot.row = row;
  return row;
}

std::span<const float> BatchEngine::row_of(const Slot& slot) const {
  return {slot.row, static_cast<size_t>(n_vocab())};
}

void BatchEngine::draw(Slot& slot) {
  slot.draw_ok = false;
  slot.draw_error.clear();
  try {
    slot.drawn_id = slot.seq->sampler_.sample(row_of(slot), slot.key.tokens);
    slot.draw_ok = true;
  } catch (const std::exception& e) {
    slot.draw_error = e.what();
  }
}

void BatchEngine::sample(Slot& slot) {
  if (!slot.draw_ok)
    return finish(slot, FinishReason::kError, {}, "sampling failed: " + slot.draw_error);
  emit(slot, slot.drawn_id, row_of(slot));
}

void BatchEngine::emit(Slot& slot, int32_t id, std::span<const float> logits) {
  Sequence& q = *slot.seq;
  const auto now = Clock::now();
  if (observer_) {
    if (!q.got_first_token_)
      observer_->on_first_token(seconds(q.created_, now));
    else
      observer_->on_token_interval(seconds(q.last_token_, now));
  }
  if (!q.got_first_token_) q.first_token_ = now;
  q.got_first_token_ = true;
  q.last_token_ = now;

  Update u;
  if (q.request_.top_logprobs >= 0)
    u.logprobs.push_back(logprob_of(logits, id, q.request_.top_logprobs, top_order_));
  if (tokenizer_.is_eog(id)) return end(slot, std::move(u), FinishReason::kStop);
  ++q.n_generated_;
  slot.key.tokens.push_back(id);
  u.tokens.push_back(id);
  u.text = std::string(q.stop_.feed(q.decoder_.push(id)));
  // The next step feeds this token, which needs one more position.
  const bool no_room = slot.n_past() + 1 > static_cast<size_t>(n_ctx_);
  if (q.stop_.stopped()) return end(slot, std::move(u), FinishReason::kStop);
  if (q.max_tokens_ >= 0 && q.n_generated_ >= q.max_tokens_)
    return end(slot, std::move(u), FinishReason::kLength);
  if (no_room) {
    if (q.request_.context != ContextPolicy::kShift)
      return end(slot, std::move(u), FinishReason::kContextFull);
    shift_context(slot);
  }
  Update p = progress(slot);
  u.n_prompt = p.n_prompt;
  u.n_cached = p.n_cached;
  u.n_generated = p.n_generated;
  q.sink_(std::move(u));
}

int64_t BatchEngine::propose(Slot& slot) {
  Sequence& q = *slot.seq;
  if (draft_max_ == 0 || q.sampler_.has_prepare())
    return 0;  // stateful constraints see every token once
  slot.propose_s = 0;
  if (slot.rates_order != slot.order) {  // a new sequence: measure plain steps first
    slot.rates_order = slot.order;
    slot.plain_rate = slot.draft_rate = 0;
    slot.draft_len = 4;
    slot.misses = 0;
    slot.pause = draft_by_speed_ ? 2 : 0;
  }
  if (slot.pause > 0) {
    --slot.pause;
    return 0;
  }
  std::vector<int32_t>& t = slot.key.tokens;
  const int64_t n = static_cast<int64_t>(t.size());
  // Room: every draft row must fit the context with a token to spare (so no
  // accepted draft meets a full context earlier than plain decoding would),
  // one step's rows (a ring layer's limit), and the tokens still wanted.
  int64_t k = std::min<int64_t>({slot.draft_len, draft_max_, n_ctx_ - n - 1, prefill_chunk_ - 1});
  if (q.max_tokens_ >= 0) k = std::min<int64_t>(k, q.max_tokens_ - q.n_generated_ - 1);
  if (k <= 0) return 0;
  const size_t rows = static_cast<size_t>(draft_max_ + 1) * static_cast<size_t>(n_vocab());
  if (slot.drafter) {  // a draft model: it appends its drafts to t
    if (slot.drafter_order != slot.order) {
      slot.drafter->start(q.request_.sampling);
      slot.drafter_order = slot.order;
    }
    int64_t made = 0;
    const auto t0 = Clock::now();
    try {
      made = slot.drafter->propose(t, k, tokenizer_, pool_);
      slot.propose_s = seconds(t0, Clock::now());
    } catch (const std::exception&) {
      // The draft model failed (e.g. its context is full): decode without
      // drafts; its cache is rebuilt from the tokens on the next try.
      t.resize(static_cast<size_t>(n));
      slot.pause = 8;
      return 0;
    }
    slot.draft.assign(t.end() - made, t.end());
    if (made > 0 && slot.draft_logits.size() < rows) slot.draft_logits.resize(rows);
    return made;
  }
  // Prompt lookup: the latest earlier place where the last 3 (else 2) tokens
  // occurred; what followed them there is the draft.
  slot.draft.clear();
  for (int64_t g = 3; g >= 2 && slot.draft.empty(); --g) {
    if (n < g + 1) continue;
    const int32_t* tail = t.data() + n - g;
    for (int64_t p = n - g - 1; p >= 0; --p) {
      if (!std::equal(tail, tail + g, t.data() + p)) continue;
      for (int64_t i = p + g; i < n && static_cast<int64_t>(slot.draft.size()) < k; ++i)
        slot.draft.push_back(t[i]);
      break;
    }
  }
  if (slot.draft.empty()) return 0;
  if (slot.draft_logits.size() < rows) slot.draft_logits.resize(rows);
  t.insert(t.end(), slot.draft.begin(), slot.draft.end());
  return static_cast<int64_t>(slot.draft.size());
}

void BatchEngine::verify(Slot& slot, int64_t k) {
  Sequence& q = *slot.seq;
  std::vector<int32_t>& t = slot.key.tokens;
  t.resize(t.size() - static_cast<size_t>(k));  // back to the last fed token
  const size_t last = t.size() - 1;             // its position
  const auto V = static_cast<size_t>(n_vocab());
  auto row = [&](size_t i) { return std::span<const float>(slot.draft_logits.data() + i * V, V); };
  // Row i saw the last token and drafts 1..i: draw from it while the draws
  // agree with the drafts (each draw's history holds the drawn tokens before it).
  std::vector<int32_t>& drawn = slot.drawn;
  drawn.clear();
  try {
    for (int64_t i = 0; i <= k; ++i) {
      const auto j = static_cast<size_t>(i);
      // A draft model's token was drawn from its q; a looked-up one is a point mass.
      const int32_t id = i == k ? q.sampler_.sample(row(j), t)
                         : slot.drafter
                             ? q.sampler_.sample_draft(row(j), t, slot.draft[j], slot.drafter->q(j))
                             : q.sampler_.sample_draft(row(j), t, slot.draft[j]);
      drawn.push_back(id);
      if (i == k || id != slot.draft[static_cast<size_t>(i)] || tokenizer_.is_eog(id)) break;
      t.push_back(id);
    }
  } catch (const std::exception& e) {
    t.resize(last + 1);
    slot.session->truncate(static_cast<int64_t>(last + 1));
    finish(slot, FinishReason::kError, {}, std::string("sampling failed: ") + e.what());
    return;
  }
  t.resize(last + 1);
  const auto n = static_cast<int64_t>(drawn.size());  // n - 1 drafts accepted, then one more draw
  // The cache keeps the last token and the accepted drafts; the final draw is fed next step.
  slot.session->truncate(static_cast<int64_t>(last) + n);
  q.n_drafted_ += k;
  q.n_accepted_ += n - 1;
  // Adapt: longer drafts while they are all taken, shorter after a miss, and
  // a pause after three steps that took nothing (so drafting never costs much).
  if (n - 1 == k) {
    slot.draft_len = std::min<int64_t>(slot.draft_len * 2, draft_max_);
  } else {
    slot.draft_len = std::max<int64_t>(1, n);
  }
  slot.misses = n == 1 ? slot.misses + 1 : 0;
  if (slot.misses >= 3) {
    slot.pause = 8;
    slot.misses = 0;
  }
  // Measured: a drafted step gave n tokens for its forward pass and the
  // drafting; while that is slower than plain steps, drafting pauses (and is
  // probed again after the pause, so text that starts repeating gains again).
  const double spent = step_s_ + slot.propose_s;
  if (spent > 0) {
    const double r = static_cast<double>(n) / spent;
    slot.draft_rate = slot.draft_rate == 0 ? r : 0.7 * slot.draft_rate + 0.3 * r;
  }
  if (draft_by_speed_ && slot.plain_rate > 0 && slot.draft_rate > 0 &&
      slot.draft_rate < slot.plain_rate)
    slot.pause = std::max(slot.pause, 16);
  for (int64_t i = 0; i < n && slot.busy(); ++i)
    emit(slot, drawn[static_cast<size_t>(i)], row(static_cast<size_t>(i)));
}

void BatchEngine::shift_context(Slot& slot) {
  // Keep the first n_keep tokens, drop half of the rest, and recompute the
  // survivors at their new positions (RoPE positions change); the sampled
  // token waiting at the end is fed after them.
  Sequence& q = *slot.seq;
  std::vector<int32_t>& t = slot.key.tokens;
  const int64_t n = static_cast<int64_t>(slot.n_past());
  const int64_t n_keep = std::clamp<int64_t>(q.request_.n_keep, 0, n - 2);
  const int64_t n_discard = std::max<int64_t>(1, (n - n_keep) / 2);
  t.erase(t.begin() + n_keep, t.begin() + n_keep + n_discard);
  slot.session->reset();
  q.prefill_end_ = t.size() - 1;
  q.sample_after_prefill_ = false;
  ++q.n_shifts_;
}

}  // namespace slm::engine
