// Typed, non-owning views of a model's tensors inside the mapped GGUF file
// (style.md §3). Shapes are given ggml-style: ne[0] is the row length, so a
// matrix [n_in, n_out] has n_out rows of n_in elements.
#pragma once

#include <cstdint>
#include <vector>

#include "base/dtype.h"
#include "gguf/gguf.h"
#include "model/config.h"

namespace slm::model {

struct Weight {
  DType type = DType::F32;
  const uint8_t* data = nullptr;  // nullptr: absent (optional tensors)
  int64_t ne[3] = {0, 0, 0};

  bool present() const { return data != nullptr; }
  int64_t row_len() const { return ne[0]; }
  int64_t rows() const { return ne[1]; }
  int64_t row_size() const { return row_bytes(type, ne[0]); }
  // The [ne0, ne1] matrix of expert e in a 3-d expert tensor.
  const uint8_t* expert(int64_t e) const { return data + e * ne[1] * row_size(); }
};

struct LayerWeights {
  Weight attn_norm;    // [n_embd]
  Weight wq;           // [n_embd, n_head * head_dim]
  Weight wk;           // [n_embd, n_head_kv * head_dim]
  Weight wv;           // [n_embd, n_head_kv * head_dim]
  Weight wo;           // [n_head * head_dim, n_embd]
  Weight bq, bk, bv;   // qwen2 biases: [q_dim], [kv_dim], [kv_dim]
  Weight q_norm;       // qwen3: [head_dim]
  Weight k_norm;       // qwen3: [head_dim]
  Weight ffn_norm;     // [n_embd]
  // dense feed-forward
  Weight ffn_gate;     // [n_embd, n_ff]
  Weight ffn_up;       // [n_embd, n_ff]
  Weight ffn_down;     // [n_ff, n_embd]
  // mixture of experts
  Weight gate_inp;     // router: [n_embd, n_expert]
  Weight gate_exps;    // [n_embd, n_ff_expert, n_expert]
  Weight up_exps;      // [n_embd, n_ff_expert, n_expert]
  Weight down_exps;    // [n_ff_expert, n_embd, n_expert]
};

struct ModelWeights {
  Weight token_embd;   // [n_embd, n_vocab]
  Weight output_norm;  // [n_embd]
  Weight output;       // [n_embd, n_vocab]; token_embd when tied
  Weight rope_freqs;   // optional per-dimension frequency divisors: [n_rot / 2]
  std::vector<LayerWeights> layers;
};

// Binds every tensor the architecture needs, checking names, shapes and types.
// Throws slm::Error naming the tensor. config.n_vocab is set from token_embd.
ModelWeights bind_weights(const gguf::File& file, ModelConfig& config);

}  // namespace slm::model
