// A loaded model: the mapped GGUF file, its configuration and typed weight
// views. Immutable after load and shared by every session/request
// (style.md §2); per-sequence state lives in Session (session.h).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "model/weights.h"

namespace slm::model {

struct LayerVectors {
  std::vector<float> attn_norm, ffn_norm;  // [n_embd]
  std::vector<float> bq, bk, bv;           // [q_dim] / [kv_dim]; empty when absent
  std::vector<float> q_norm, k_norm;       // [head_dim]; empty when absent
};

class Model {
 public:
  // Maps and validates path. Throws slm::Error naming the file and the key or tensor.
  static std::unique_ptr<Model> load(const std::string& path);
  // Builds a model over an already parsed file (tests build files in memory).
  static std::unique_ptr<Model> from_file(std::unique_ptr<gguf::File> file);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const gguf::File& file() const { return *file_; }

  // Small float vectors (norm weights, biases) converted once at load.
  const LayerVectors& layer_vectors(int64_t layer) const { return vectors_[layer]; }
  const std::vector<float>& output_norm() const { return output_norm_; }
  // RoPE angle per position for each rotated pair: [n_rot / 2], with
  // frequency scaling (linear, llama3, or rope_freqs.weight) already applied.
  const std::vector<float>& rope_inv_freq() const { return inv_freq_; }

  // Total parameters (elements of every tensor).
  int64_t n_params() const;

  // The load-time repacked copy of a 2-d weight matrix (kernels::PackedMatrix)
  // when its type packs profitably on this CPU, else nullptr: use w as is.
  const kernels::PackedMatrix* packed(const Weight& w) const { return packed(w.data); }
  // The same for a matrix given by its first byte (an expert's slice).
  const kernels::PackedMatrix* packed(const uint8_t* data) const {
    const auto it = packed_.find(data);
    return it == packed_.end() ? nullptr : &it->second;
  }
  // Bytes held by repacked matrices (their file pages are released, so this
  // replaces rather than adds to the mapped bytes in resident memory).
  size_t packed_bytes() const;

 private:
  Model() = default;
  static std::unique_ptr<Model> build(std::unique_ptr<gguf::File> file, bool mapped);
  void prepare();
  // Repacks the 2-d matrices whose type pays (kernels::PackedMatrix::pays).
  // release_source: the file is memory-mapped, so the source pages can be
  // dropped from resident memory after repacking (they fault back in from
  // the file if read again, e.g. a tied embedding row).
  void pack_weights(bool release_source);

  std::unique_ptr<gguf::File> file_;
  ModelConfig config_;
  ModelWeights weights_;
  std::vector<LayerVectors> vectors_;
  std::vector<float> output_norm_;
  std::vector<float> inv_freq_;
  std::unordered_map<const uint8_t*, kernels::PackedMatrix> packed_;  // keyed by Weight::data
};

// Converts a 1-d float tensor (F32/F16/BF16) to float32.
std::vector<float> to_f32(const Weight& w, int64_t n);

// The RoPE angle per position for each of the n_rot/2 pairs, before any
// rope_freqs.weight divisors. Exposed for tests.
std::vector<float> compute_rope_inv_freq(const ModelConfig& c);

}  // namespace slm::model
