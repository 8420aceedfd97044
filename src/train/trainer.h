// The training forward and backward of a llama-family model (llama, qwen2,
// qwen3, qwen3moe: RMSNorm, RoPE normal or NeoX, causal GQA attention with
// optional q/k norms and q/k/v biases, SwiGLU or a top-k mixture of SwiGLU
// experts (train/moe_ffn.h), final norm, output) for one
// sequence at positions 0..n-1, in float, with the activations the backward
// needs saved per layer. The base weights stay frozen in their stored form
// (forward through backend::Backend::linear, backward through
// train::input_grad); only the LoRA pairs of a LoraParams get gradients, or,
// for full training, every weight of a FullParams (train/full_params.h).
//
// Ownership: a Trainer refers to the model and the LoRA parameters (both
// must outlive it) and owns its activation buffers, sized once for
// max_tokens. Thread-safety: one caller; work is spread over the pool.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"

namespace slm {
class ThreadPool;
}
namespace slm::model {
class Model;
}

namespace slm::train {

class FullParams;
class LoraParams;

// One training sequence: target[i] != 0 means tokens[i] is predicted from
// tokens[0..i) and counts in the loss (target[0] is ignored).
struct Example {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> target;
  int64_t n_targets() const;
};

struct LossSum {
  double loss = 0;  // summed cross-entropy (nats) over the targets
  int64_t n_targets = 0;
};

class Trainer {
 public:
  // Throws slm::Error when the model is outside what training supports
  // (Gemma's norms and soft-caps, sliding windows, ...).
  // lora may be null (the base alone: no gradients). recompute: keep only
  // each layer's input [max_tokens][n_embd] and recompute the layer's other
  // activations in the backward (bit-identical results, about one more
  // forward pass of time, n_layer - 1 fewer sets of activations).
  Trainer(const model::Model& model, LoraParams* lora, int64_t max_tokens, ThreadPool& pool,
          bool recompute = false);
  // Full training: the forward reads full's masters (not the model's
  // weights) and the backward accumulates into every one of its gradients.
  Trainer(const model::Model& model, FullParams& full, int64_t max_tokens, ThreadPool& pool,
          bool recompute = false);
  ~Trainer();

  // Why training refuses a model, or "" when it can train it.
  static std::string unsupported_reason(const model::Model& model);

  // Forward (and with backward, the backward) of one example: the loss
  // summed over its targets; gradients of grad_scale * that sum accumulate
  // into the LoRA pairs. ex.tokens.size() <= max_tokens.
  LossSum run(const Example& ex, bool backward, float grad_scale = 1.0f);

  // Logits of every row [n][n_vocab] of a sequence (tests compare them with
  // model::forward).
  void logits(std::span<const int32_t> tokens, std::vector<float>& out);

  // Whether the LoRA term is applied in the forward (off: the base model,
  // e.g. DPO's reference).
  void set_lora_enabled(bool on) { lora_on_ = on; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool lora_on_ = true;
};

}  // namespace slm::train
