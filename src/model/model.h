// A loaded model: the mapped GGUF file, its configuration and its weights
// (each matrix a backend::Linear that carries its prepared form), bound by
// walking the family's tensor table. Immutable after load and shared by every
// session/request (style.md §2); per-sequence state lives in Session
// (session.h), the math in forward.cpp.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "model/sparsity.h"
#include "model/weights.h"

namespace slm::model {

// Run-time pruning, set once after loading and before any step (front ends:
// --sparsity, --moe-top-k, --moe-min-weight). Defaults change nothing.
struct PruneOptions {
  std::shared_ptr<const Sparsity> sparsity;  // null: dense
  int64_t moe_top_k = 0;                     // 0: the model's n_expert_used; else at most that
  float moe_min_weight = 0;  // drop chosen experts whose renormalised weight is below
  int threads = 1;           // threads that build set_prune's column copies (the same bytes)
};

class Model {
 public:
  // Maps and validates path. Throws slm::Error naming the file and the key or tensor.
  // threads: how many share the repacking of the weights (the same bytes).
  static std::unique_ptr<Model> load(const std::string& path, int threads = 1);
  // Builds a model over an already parsed file (tests build files in memory).
  static std::unique_ptr<Model> from_file(std::unique_ptr<gguf::File> file, int threads = 1);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const gguf::File& file() const { return *file_; }
  // The backend chosen at load; every op of the forward pass goes through it.
  const backend::Backend& backend() const { return *backend_; }

  // RoPE angle per position for each rotated pair: [n_rot / 2], with
  // frequency scaling (linear, llama3, rope_freqs.weight) already applied.
  // table: LayerConfig::rope_table (0: the file's base; 1: the sliding
  // layers' own base). long_ctx: a session longer than the original context
  // (LongRoPE's long factors; see rope_long).
  const std::vector<float>& rope_inv_freq(int table = 0, bool long_ctx = false) const {
    return inv_freq_[static_cast<size_t>(table)][long_ctx ? 1 : 0];
  }
  int n_rope_tables() const { return static_cast<int>(inv_freq_.size()); }
  // Whether a session of n_ctx positions uses the long factors (Phi-3: when
  // its context exceeds rope.scaling.original_context_length).
  bool rope_long(int64_t n_ctx) const {
    return !weights_.rope_factors_long.empty() && n_ctx > config_.rope_orig_ctx;
  }

  // Sets run-time pruning (see PruneOptions). Throws slm::Error when the
  // sparsity file was calibrated for another model or the MoE options do not
  // fit it. Not thread-safe: call before any session steps.
  void set_prune(PruneOptions p, const std::string& sparsity_name = "sparsity file");
  const PruneOptions& prune() const { return prune_; }
  // CATS's gate test of layer l (set_prune makes one per layer for a "cats"
  // file; the forward pass asks only then).
  const GateCut& gate_cut(int64_t l) const { return gate_cuts_[static_cast<size_t>(l)]; }
  // Bytes of the column copies set_prune made for input-sparse decoding (in
  // addition to the weights: the dense form still serves prompts).
  size_t column_bytes() const;

  // Total parameters (elements of every tensor).
  int64_t n_params() const;
  // Bytes held by the backend's prepared matrices (their file pages are
  // released, so this replaces rather than adds to the mapped bytes in
  // resident memory).
  size_t packed_bytes() const;

 private:
  Model() = default;
  static std::unique_ptr<Model> build(std::unique_ptr<gguf::File> file, bool mapped, int threads);
  void build_rope_tables();
  // Column copies of each group (one stacked copy where the backend can), on
  // `threads` threads.
  void prepare_columns(const std::vector<std::vector<backend::Linear*>>& groups, int threads);

  std::unique_ptr<gguf::File> file_;
  const backend::Backend* backend_ = nullptr;
  ModelConfig config_;
  ModelWeights weights_;
  std::vector<std::array<std::vector<float>, 2>> inv_freq_;  // [table][short, long]
  PruneOptions prune_;
  std::vector<GateCut> gate_cuts_;  // [n_layer] for a CATS sparsity file, else empty
};

// The RoPE angle per position for each of the n_rot/2 pairs, before any
// rope_freqs.weight divisors. Exposed for tests.
std::vector<float> compute_rope_inv_freq(const ModelConfig& c);

}  // namespace slm::model
