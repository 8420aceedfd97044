// What an architecture family is, written once: the GGUF names it answers
// to, its RoPE pairing, and its tensor table (name, shape, required or
// optional, role, where the bound tensor goes). Binding (weights.cpp), packing
// (model.cpp), `slm synth`, `slm info` and the tests' float64 forward all walk
// these tables; a new family is a new table plus the ops it needs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"

namespace slm::model {

struct ModelConfig;
struct ModelWeights;
struct LayerWeights;

enum class RopeOrder { kNormal, kNeox };  // adjacent pairs vs. halves
// The gate's activation in a gated feed-forward: SwiGLU or GeGLU (tanh GELU).
using FfnActivation = backend::Activation;
// Which layers use sliding-window attention (when the file sets a window).
enum class SwaPattern {
  kNone,
  kAll,             // every layer (Phi-3 with attention.sliding_window)
  kEven,            // layers 0, 2, 4, ... (Gemma 2)
  kFiveLocalOneGlobal,  // layers 5, 11, 17, ... global, the rest sliding (Gemma 3)
};

// A dimension of a tensor, resolved against a config.
enum class Dim : uint8_t { kEmbd, kVocab, kQ, kKv, kV, kOut /* n_head * head_dim_v */, kHeadDim, kFf, kFfExpert, kExpert, kRotHalf };
int64_t dim_value(Dim d, const ModelConfig& c);

// When a tensor is required: always, or only in dense / mixture-of-experts models.
enum class Need : uint8_t { kRequired, kOptional, kDense, kMoe };

// Where a bound tensor lives in ModelWeights / LayerWeights.
enum class Kind : uint8_t {
  kTable,    // kept as a raw view (the token embedding)
  kVector,   // F32/F16/BF16, converted to float once at load
  kMatrix,   // a Linear
  kExperts,  // a 3-d tensor: one Linear per expert slice
  kFused,    // one matrix whose row blocks are several Linears (Phi-3's attn_qkv, gate+up)
};

// How `slm synth` and `slm train` initialise a tensor: uniform in
// [center - spread, center + spread], spread scaled by 1/sqrt(cols) for matrices.
struct Init {
  float center = 0.0f;
  float spread = 1.0f;
};

struct TensorSpec {
  const char* name = "";  // per layer: the part after "blk.N."; e.g. "attn_q.weight"
  Kind kind = Kind::kVector;
  std::vector<Dim> shape;  // ggml order: shape[0] is the row length
  Need need = Need::kRequired;
  backend::Role role = backend::Role::kQ;  // matrices only
  Init init;
  // Exactly one of these is set, by kind and scope.
  backend::MatrixView ModelWeights::*global_table = nullptr;
  std::vector<float> ModelWeights::*global_vector = nullptr;
  backend::Linear ModelWeights::*global_matrix = nullptr;
  std::vector<float> LayerWeights::*vector = nullptr;
  backend::Linear LayerWeights::*matrix = nullptr;
  std::vector<backend::Linear> LayerWeights::*experts = nullptr;
  // kFused: the row blocks in order (shape[1] of the whole is their sum).
  struct Part {
    Dim rows;
    backend::Linear LayerWeights::*matrix;
    backend::Role role;
  };
  std::vector<Part> parts;
};

struct Family {
  std::string_view name;                   // "qwen2"
  std::vector<std::string_view> aliases;   // general.architecture values it reads ("llama", "mistral")
  RopeOrder rope_order = RopeOrder::kNormal;
  bool needs_experts = false;              // qwen3moe: expert_count is required
  bool writes_expert_ff_length = false;    // synth writes {arch}.expert_feed_forward_length
  std::vector<TensorSpec> globals;         // token_embd, output_norm, output, rope_freqs
  std::vector<TensorSpec> layer;           // one block's tensors
  // Per-family behaviour beyond the tensors:
  FfnActivation ffn_act = FfnActivation::kSilu;
  SwaPattern swa = SwaPattern::kNone;
  float swa_rope_base = 0.0f;        // sliding layers' RoPE base (0: the file's)
  bool scale_embeddings = false;     // x = embedding * sqrt(n_embd)
  // Gemma's 27B models scale q by 1/sqrt(n_embd / n_head) rather than
  // 1/sqrt(head_dim); llama.cpp tells them by their layer count.
  int64_t q_scale_by_embd_at_layers = 0;
};

// Every supported family, in a fixed order.
std::span<const Family> families();
// The family for a general.architecture value, or nullptr.
const Family* find_family(std::string_view arch);
// "llama, mistral, qwen2, qwen3, qwen3moe" for error messages.
std::string family_names();

// The full GGUF name of a table entry: "output.weight" or "blk.3.attn_q.weight".
std::string tensor_name(const TensorSpec& t, int64_t layer);
// The table entry a GGUF tensor name binds to ("blk.3.attn_q.weight" -> the
// layer entry "attn_q.weight"), or nullptr for a tensor slm does not read.
const TensorSpec* find_spec(const Family& family, std::string_view tensor);
// A short label of what the entry is for: a matrix's role ("q", "down"...),
// or "embedding", "norm", "bias", "rope".
std::string spec_label(const TensorSpec& t);

// The entry's full GGUF shape for a config (ggml order; a fused matrix's
// rows are the sum of its parts).
std::vector<int64_t> tensor_shape(const TensorSpec& t, const ModelConfig& c);
// Whether layer il of a family with this pattern uses the sliding window.
bool is_sliding(SwaPattern p, int64_t il);

// Whether the entry must be present for this config.
bool required(const TensorSpec& t, const ModelConfig& c);
// Whether the entry can be present for this config (experts only in MoE models...).
bool applies(const TensorSpec& t, const ModelConfig& c);

}  // namespace slm::model
