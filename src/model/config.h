// Hyper-parameters of a transformer, read from GGUF metadata keys
// ("{arch}.embedding_length", ...) and validated so later code can index
// without further checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/arch.h"

namespace slm::gguf {
class Writer;
}

namespace slm::model {

enum class RopeScaling { kNone, kLinear, kLlama3 };

// Per-layer flags, from the family's layer pattern.
struct LayerConfig {
  bool sliding = false;  // attends to the last n_swa positions only
  int rope_table = 0;    // which RoPE frequency table (Model::rope_inv_freq): 0 global, 1 local
};

struct ModelConfig {
  const Family* family = nullptr;  // never null after read_config
  std::string arch_name;           // general.architecture as written
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;    // attention.key_length; n_embd / n_head when absent
  int64_t head_dim_v = 0;  // attention.value_length
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  float norm_eps = 1e-5f;

  // RoPE
  RopeOrder rope_order = RopeOrder::kNormal;
  int64_t n_rot = 0;  // rotated dimensions per head (<= head_dim, even)
  float rope_base = 10000.0f;
  RopeScaling rope_scaling = RopeScaling::kNone;
  float rope_scale_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int64_t rope_orig_ctx = 8192;
  float rope_attn_factor = 1.0f;  // LongRoPE magnitude: cos/sin scaled by it
  float rope_base_swa = 0.0f;     // sliding layers' own RoPE base (Gemma 3: 1e4); 0: rope_base

  // Attention and output shaping (0: off)
  int64_t n_swa = 0;            // sliding-window length, for the layers flagged sliding
  float attn_softcap = 0.0f;    // scores -> cap * tanh(scores / cap) (Gemma 2)
  float final_softcap = 0.0f;   // logits -> cap * tanh(logits / cap) (Gemma 2)
  float attn_scale = 0.0f;      // multiplies q.k; 1 / sqrt(head_dim) unless the family says otherwise
  float embd_scale = 1.0f;      // input embeddings are multiplied by this (Gemma: sqrt(n_embd))
  FfnActivation ffn_act = FfnActivation::kSilu;
  std::vector<LayerConfig> layers;  // [n_layer]

  // Mixture of experts (n_expert == 0 for dense models)
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_expert = 0;
  bool expert_weights_norm = true;  // renormalise the chosen experts' weights

  bool is_moe() const { return n_expert > 0; }
  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  int64_t v_dim() const { return n_head_kv * head_dim_v; }
};

// Reads and validates the configuration. Throws slm::Error naming the file
// and the key (unsupported architecture, missing or out-of-range values).
ModelConfig read_config(const gguf::File& file);

// The core hyper-parameters under "<arch>." that read_config reads back, as
// every GGUF writer here sets them (synth, convert, bench's copy model), in
// one key order: context, embedding, blocks, FFN, heads, head dims, rotary
// dims, rotary base, norm epsilon. Family extras (scaling, soft-caps,
// experts) stay with the writer that knows them.
struct CoreHparams {
  std::string arch;
  int64_t n_ctx = 0, n_embd = 0, n_layer = 0, n_ff = 0, n_head = 0, n_head_kv = 0;
  int64_t head_dim = 0;  // attention.key_length / value_length; 0: not written (n_embd / n_head)
  int64_t n_rot = 0;     // rope.dimension_count; 0: not written (the whole head)
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;
};
void write_core_hparams(gguf::Writer& w, const CoreHparams& h);

}  // namespace slm::model
