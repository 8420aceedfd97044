// The batch engine: a fixed set of slots, each a model::Session (KV cache of
// the full context) that keeps its tokens after a request ends, and one step()
// that advances every running sequence with a single model::forward, so each
// weight is read once per step for all of them. Continuous batching (the
// server's Scheduler) and one-slot synchronous generation (slm run / chat,
// through Generator) both drive this class; there is no other generation loop.
//
// Admission: a sequence goes to the free slot whose cache shares the longest
// prefix with its prompt (CacheKey: tokens and adapter), least recently used
// among equals; a longer prefix held by another slot is copied over. At least
// one prompt token is always fed, for the logits of the first choice.
// A step feeds decoding rows first (one per generating sequence), then prompt
// chunks within prefill_chunk tokens, shortest remaining prompt first with
// credit for the steps waited (so time to first token stays bounded for long
// and short prompts alike; step() gives the rule); the logits of each
// row that ends a prompt or decodes are read where forward writes them, in the
// slot's Session (Session::last_logits), with no per-slot copy.
//
// Ownership: a BatchEngine borrows the model, tokenizer, pool and observer
// (they outlive it) and owns its sessions, scratch and running sequences.
// Thread-safety: make_sequence() may be called from any thread; everything
// else from the one thread that drives the engine.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "engine/observer.h"
#include "engine/sequence.h"
#include "model/session.h"

namespace slm {
class ThreadPool;
}

namespace slm::engine {

struct BatchOptions {
  int n_slots = 4;              // sequences decoded together
  int64_t n_ctx = 0;            // per slot (never divided); 0: the model's training context
  int64_t prefill_chunk = 128;  // prompt tokens per step, over all sequences
  bool allow_beyond_train_ctx = false;
  DType kv_type = DType::F32;  // of every slot's KV cache (model::SessionOptions)
  // Speculative decoding by prompt lookup (n-gram drafts from the sequence's
  // own tokens), verified in the same batched step: the most draft tokens per
  // sequence and step; 0: off. Greedy output is unchanged; sampled output
  // keeps its distribution (Sampler::sample_draft). Not used with grammars.
  int draft_max = 0;
  // With draft_max: drafts come from this small model of the same vocabulary
  // (draft_model.h; its tokenizer must equal the target's) instead of the
  // n-gram lookup, each drawn from the draft's distribution. Borrowed: it
  // outlives the engine. null: prompt lookup.
  const model::Model* draft_model = nullptr;
  // Pause drafting while its measured speed (tokens per second of drafted
  // steps, drafting included) is below plain steps', after two plain steps
  // that measure the latter. Off: draft whenever a draft is found (tests that
  // need drafts in every step; timing makes sampled output vary by run).
  bool draft_by_speed = true;
  // Write every slot's cache once when the engine is made (Session::prefault):
  // a server's first burst then pays no page faults inside its steps.
  bool prefault_kv = false;
};

struct KvUse {
  int64_t active = 0;  // positions held by running sequences
  int64_t cached = 0;  // positions kept by idle slots for prefix reuse
};

class BatchEngine {
 public:
  // Allocates every slot's KV cache up front; throws slm::Error when the
  // options are invalid.
  BatchEngine(const model::Model& model, const tokenizer::Tokenizer& tokenizer,
              const BatchOptions& options, ThreadPool& pool, EngineObserver* observer = nullptr);
  ~BatchEngine();
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  // Validates request (throws RequestError) and prepares its sequence. sink
  // receives its updates on the stepping thread; cancel (may be null) is
  // polled before every step and must outlive the sequence.
  std::unique_ptr<Sequence> make_sequence(Request request, UpdateSink sink,
                                          const std::atomic<bool>* cancel = nullptr) const;

  // Puts seq into a free slot (see admission above). Throws slm::Error when
  // every slot is busy.
  void admit(std::unique_ptr<Sequence> seq);
  // One forward pass over every running sequence and what follows it
  // (sampling, stop strings, finishing). Sequences that end leave their slot
  // before their final update is sent.
  void step();
  // Ends every running sequence with an error; with drop_caches their KV
  // caches are forgotten (after a failure they cannot be trusted).
  void fail_all(const std::string& error, ErrorKind kind, bool drop_caches);

  int n_slots() const { return static_cast<int>(slots_.size()); }
  int n_active() const;
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_vocab() const;
  int64_t kv_bytes() const;  // KV cache allocated for all slots
  KvUse kv_use() const;
  // Tokens held in slot i's KV cache, in order.
  std::span<const int32_t> cached_tokens(int slot) const;
  // Forgets every idle slot's cache.
  void clear_cache();
  // The vocabulary as the grammar sees it (token bytes and their trie), built
  // on first use (a grammar request) and shared by every such sequence.
  // Thread-safe.
  std::shared_ptr<const GrammarVocab> grammar_vocab() const;

 private:
  struct Slot;
  // Ends slot's sequence: u (text of its last token) plus what is held back,
  // the counts and timings; frees the slot, then calls the sink.
  void finish(Slot& slot, FinishReason why, Update u = {}, std::string error = {},
              ErrorKind kind = ErrorKind::kInternal);
  void end(Slot& slot, Update&& u, FinishReason why);  // finish after a sampled token
  // Draws slot's next token from its session's logits into slot.drawn_id
  // (draw_ok false: why in slot.draw_error); touches nothing but slot and its sampler.
  void draw(Slot& slot);
  // Emits the token draw() gave (or ends slot with the draw's error).
  void sample(Slot& slot);
  // The next free row of step_logits_, made slot's row for this step.
  float* next_row(Slot& slot);
  std::span<const float> row_of(const Slot& slot) const;  // [n_vocab]
  // The part of sampling after the draw: logprobs, end of generation, stop
  // strings, limits, the update. logits: the row id was drawn from.
  void emit(Slot& slot, int32_t id, std::span<const float> logits);
  // Drafts for slot's next step (appended to its key after the last token);
  // returns how many.
  int64_t propose(Slot& slot);
  // Draws from each row of a drafted step until a draw differs from the
  // draft, keeps the KV of what was accepted, and emits the draws.
  void verify(Slot& slot, int64_t k);
  void shift_context(Slot& slot);
  Update progress(const Slot& slot) const;

  const model::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  ThreadPool& pool_;
  EngineObserver* observer_;
  int64_t n_ctx_ = 0;
  int64_t prefill_chunk_ = 0;
  int draft_max_ = 0;
  bool draft_by_speed_ = true;
  std::vector<std::unique_ptr<Slot>> slots_;
  model::Scratch scratch_;
  uint64_t tick_ = 0;   // admission counter: prefill order among equals, least recently used
  uint64_t steps_ = 0;  // steps taken: a waiting prompt's age in the prefill order
  // Step buffers, sized once.
  std::vector<model::SeqChunk> chunks_;
  std::vector<Slot*> chunk_slots_;
  std::vector<Slot*> order_;
  std::vector<int32_t> top_order_;  // logprobs sort buffer [n_vocab]
  double step_s_ = 0;  // the last step's forward pass, seconds (speculative decoding's rates)
  std::vector<int64_t> chunk_drafts_;  // per chunk: draft tokens it verifies (0: a plain row)
  std::vector<Slot*> prepare_;         // slots whose masks this step computes in parallel
  std::vector<Slot*> draws_;           // slots whose plain draws this step makes in parallel
  // The next-token logits of this step's plain rows [n_slots][n_vocab], in
  // chunk order, so the output matrix writes them in place (SeqChunk) and
  // nothing is copied per slot; n_rows_ of them in use.
  std::vector<float> step_logits_;
  int64_t n_rows_ = 0;
  mutable std::mutex vocab_mutex_;
  mutable std::shared_ptr<const GrammarVocab> grammar_vocab_;
};

}  // namespace slm::engine
