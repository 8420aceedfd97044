// A model's weights bound from the GGUF file by walking its family's tensor
// table (arch.h): matrices as backend::Linear (a view into the mapped file
// plus the backend's prepared form), norm weights and biases converted to
// float once. Shapes are given ggml-style: ne[0] is the row length, so a
// matrix [n_in, n_out] has n_out rows of n_in elements.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf.h"
#include "model/config.h"

namespace slm::model {

struct LayerWeights {
  std::vector<float> attn_norm;         // [n_embd]
  backend::Linear wq;                   // [n_embd, n_head * head_dim]
  backend::Linear wk;                   // [n_embd, n_head_kv * head_dim]
  backend::Linear wv;                   // [n_embd, n_head_kv * head_dim]
  backend::Linear wo;                   // [n_head * head_dim, n_embd]
  std::vector<float> bq, bk, bv;        // [q_dim], [kv_dim], [kv_dim]; empty when absent
  std::vector<float> q_norm, k_norm;    // per-head RMSNorm [head_dim]; empty when absent
  std::vector<float> post_attn_norm;    // Gemma: norm of the attention output [n_embd]; empty when absent
  std::vector<float> ffn_norm;          // [n_embd]
  std::vector<float> post_ffn_norm;     // Gemma: norm of the feed-forward output [n_embd]; empty when absent
  // dense feed-forward
  backend::Linear ffn_gate;             // [n_embd, n_ff]
  backend::Linear ffn_up;               // [n_embd, n_ff]
  backend::Linear ffn_down;             // [n_ff, n_embd]
  // mixture of experts
  backend::Linear gate_inp;                   // router: [n_embd, n_expert]
  std::vector<backend::Linear> gate_exps;     // [n_expert] x [n_embd, n_ff_expert]
  std::vector<backend::Linear> up_exps;       // [n_expert] x [n_embd, n_ff_expert]
  std::vector<backend::Linear> down_exps;     // [n_expert] x [n_ff_expert, n_embd]

  // Per-layer flags, from what the file holds.
  bool has_qkv_bias() const { return !bq.empty() || !bk.empty() || !bv.empty(); }
  bool has_qk_norm() const { return !q_norm.empty() || !k_norm.empty(); }
};

struct ModelWeights {
  backend::MatrixView token_embd;   // [n_embd, n_vocab], read row by row
  std::vector<float> output_norm;   // [n_embd]
  backend::Linear output;           // [n_embd, n_vocab]; token_embd's bytes when tied
  std::vector<float> rope_freqs;    // optional per-pair frequency divisors [n_rot / 2]; empty when absent
  std::vector<float> rope_factors_long, rope_factors_short;  // Phi-3 LongRoPE divisors [n_rot / 2]
  std::vector<LayerWeights> layers;

};

// Binds every tensor the family's table names, checking names, shapes and
// types. Throws slm::Error naming the tensor. config.n_vocab is set from
// token_embd.
ModelWeights bind_weights(const gguf::File& file, ModelConfig& config);

// Calls f on every bound Linear of the model, walking the family's table
// (for packing; later for adapters and statistics). An expert tensor gives
// one call per expert.
void for_each_linear(ModelWeights& w, const ModelConfig& config, const std::function<void(backend::Linear&)>& f);
void for_each_linear(const ModelWeights& w, const ModelConfig& config,
                     const std::function<void(const backend::Linear&)>& f);

}  // namespace slm::model
