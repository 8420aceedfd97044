// The batched forward pass: one step advances many sequences together, so
// every weight matrix is read once per step for all of them (continuous
// batching), while attention runs per sequence over its own KV cache.
//
// A step is described once (StepBatch: rows, positions, each sequence's row
// range) and then runs as named blocks (forward.cpp): embed, per layer an
// attention block and a dense or mixture-of-experts feed-forward, then the
// output logits. Every op goes through the model's backend.
// Thread-safety: one thread drives a step; the pool spreads its work.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "model/sparsity.h"

namespace slm {
class ThreadPool;
}

namespace slm::model {

class LoraAdapter;
class Model;
class Session;
struct ModelConfig;

// One sequence's part of a batched step: its tokens go to positions
// session->n_past()... . logits: nullptr for none, else the last row
// ([n_vocab]) or, with all_rows, every row ([tokens.size()][n_vocab]); it may
// point at the session's own logits buffer (no copy is made then).
// embeddings: when set, the rows' inputs [tokens.size()][n_embd] (e.g. image
// features) instead of the tokens' embeddings; the ids then only count rows.
// The session's last_logits() is updated whenever logits are computed,
// unless keep_last is false (the caller reads the row at logits instead).
// When the chunks that want logits name consecutive rows of one buffer (one
// row each, in chunk order), the output matrix writes them there directly:
// a batched decoding step then copies no logits at all.
// adapter: LoRA deltas applied to this sequence's rows (nullptr: the base).
struct SeqChunk {
  Session* session = nullptr;
  std::span<const int32_t> tokens;
  float* logits = nullptr;
  bool all_rows = false;
  const float* embeddings = nullptr;
  const LoraAdapter* adapter = nullptr;
  bool keep_last = true;
};

// Where each sequence's rows sit in a step: computed once per step, before
// the math.
struct SeqRows {
  Session* session;
  int64_t row0, n_rows;  // rows [row0, row0 + n_rows) of the step
  int64_t pos0;          // position of its first row (the session's n_past)
  const LoraAdapter* adapter;
};
struct StepBatch {
  int64_t n_rows = 0;
  int64_t max_ctx = 0;        // the longest context among the sequences
  std::vector<SeqRows> seqs;  // in chunk order
  std::vector<int64_t> pos;   // [n_rows] position of each row
  bool any_adapter = false;
};

// Sees the projection inputs of every step (calibration, statistics): x
// [n_rows][width] as it enters the matrices of tap t in layer l, before any
// pruning; for Tap::kGate, the gate's pre-activation [n_rows][n_ff].
struct ActivationTap {
  virtual ~ActivationTap() = default;
  virtual void on_activation(int64_t layer, Tap t, const float* x, int64_t n_rows,
                             int64_t width) = 0;
};

// Activations zeroed by pruning (PruneOptions::sparsity) out of those tapped.
struct PruneStats {
  uint64_t zeroed = 0, total = 0;
};

// Where steps' time went (Scratch::set_profile; bench_prune --profile): wall
// nanoseconds and calls of the matrix products by what they compute and how
// (dense kernels or column copies), and of pruning's own passes over the
// activations (thresholds, CATS's gate cut, kept-input lists: kPrune, in
// [kPrune][0]). Accumulates over steps until reset.
struct StepProfile {
  enum Part : uint8_t { kQkv, kO, kGateUp, kDown, kHead, kOther, kPrune, kNumParts };
  static constexpr const char* kNames[kNumParts] = {"q/k/v", "o",     "gate/up", "down",
                                                    "head",  "other", "prune"};
  double ns[kNumParts][2] = {};  // [part][0: dense, 1: columns]
  uint64_t calls[kNumParts][2] = {};
  // Column calls: inputs listed as kept, and the inputs they had.
  uint64_t kept[kNumParts] = {}, inputs[kNumParts] = {};
};

// Activation buffers for up to max_rows token rows in one step.
class Scratch {
 public:
  Scratch(const ModelConfig& config, int64_t max_rows);
  int64_t max_rows() const { return max_rows_; }
  // tap (nullptr: none) must outlive the steps it sees.
  void set_tap(ActivationTap* tap) { tap_ = tap; }
  // profile (nullptr: none, the default) must outlive the steps it times.
  void set_profile(StepProfile* profile) { profile_ = profile; }
  // Counts of the last step (reset at each step's start).
  const PruneStats& prune_stats() const { return stats_; }

 private:
  friend struct Forward;
  int64_t max_rows_;
  ActivationTap* tap_ = nullptr;
  StepProfile* profile_ = nullptr;
  PruneStats stats_;
  StepBatch batch_;
  backend::Workspace ws_;             // matmul and attention-score buffers
  std::vector<float> x_;              // residual stream [rows][n_embd]
  std::vector<float> xn_;             // normalised input [rows][n_embd]
  std::vector<float> q_;              // [rows][q_dim]
  std::vector<float> k_, v_;          // [rows][kv_dim]
  std::vector<float> attn_;           // [rows][q_dim]
  std::vector<float> proj_;           // [rows][n_embd]
  std::vector<float> gate_, up_;      // [rows][max(n_ff, n_ff_expert)]
  std::vector<float> rope_;           // rotary cos/sin of each row's position [tables][rows][n_rot]
  std::vector<float> router_;         // [rows][n_expert]
  std::vector<float> expert_in_;      // tokens routed to one expert [rows][n_embd]
  std::vector<int32_t> expert_rows_;  // [rows]
  std::vector<float> expert_weight_;  // [rows]
  std::vector<int32_t> chosen_;       // [rows][n_expert_used]
  std::vector<float> chosen_w_;       // [rows][n_expert_used]
  std::vector<int32_t> expert_order_;  // router sort buffer [n_expert]
  // The one row (decoding) that prune() or cut_gate() last zeroed: kept_of_
  // (nullptr: none; linear_pruned takes and clears it) kept at most n_kept_
  // inputs, which linear_pruned lists in kept_ [max(n_embd, q_dim, n_ff)]
  // when it reads the column copies.
  std::vector<int32_t> kept_;
  int64_t n_kept_ = 0;
  const float* kept_of_ = nullptr;
  std::vector<float> out_rows_;  // final-norm rows needing logits [rows][n_embd]
  std::vector<float> logits_;    // logits of those rows [rows][n_vocab], grown on demand
  std::vector<float>
      lora_t_;  // A x of every adapted segment of one call [rows][rank], grown on demand
  std::vector<backend::LoraSegment> lora_segs_;  // one call's LoRA segments (outputs x sequences)
};

// Advances every chunk's session by its tokens in one pass: the weight
// matrices are applied to all rows together, attention runs per sequence.
// Sessions must be distinct and belong to model; the total row count must fit
// scratch.max_rows(). Callers validate tokens first (Session::check_tokens).
void forward(const Model& model, std::span<const SeqChunk> chunks, Scratch& scratch,
             ThreadPool& pool);

}  // namespace slm::model
