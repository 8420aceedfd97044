// Trainable LoRA parameters for finetuning: per adapted base matrix W
// [n_in, n_out], A [r][n_in] and B [n_out][r] in float with their gradients,
// so that y = W x + scale * B (A x), scale = alpha / r (PEFT's and llama.cpp's
// convention). Initialised as PEFT does: A Kaiming-uniform (bound
// 1 / sqrt(n_in)), B zero, so training starts from the base model exactly.
// Saved in llama.cpp's adapter layout (model/lora.h), loadable with
// LoraAdapter::load and `slm run --lora`.
//
// Ownership: refers to the base Model's Linear objects by address, so it must
// not outlive the model. Thread-safety: one trainer at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"

namespace slm::model {
class Model;
class LoraAdapter;
}  // namespace slm::model

namespace slm::train {

struct LoraSpec {
  int64_t rank = 16;
  float alpha = 32.0f;
  std::vector<backend::Role> targets;  // roles of the matrices to adapt (q k v o gate up down)
};

// "q,k,v,o,gate,up,down" -> roles; throws slm::Error naming an unknown or
// unsupported entry.
std::vector<backend::Role> parse_targets(const std::string& list);

struct LoraPairParams {
  const backend::Linear* w = nullptr;  // the base matrix
  std::string name;                    // its GGUF name, e.g. "blk.0.attn_q.weight"
  int64_t n_in = 0, n_out = 0, rank = 0;
  std::vector<float> a, b;            // [rank][n_in], [n_out][rank]
  std::vector<float> grad_a, grad_b;  // same shapes
  backend::Linear a_lin, b_lin;       // views over a and b for backend::Backend::linear
};

class LoraParams {
 public:
  // Adapts every matrix of the model whose role is in spec.targets. Throws
  // slm::Error when the rank is out of range or no matrix matches.
  LoraParams(const model::Model& model, const LoraSpec& spec);
  LoraParams(const LoraParams&) = delete;
  LoraParams& operator=(const LoraParams&) = delete;

  // A Kaiming-uniform from seed, B zero.
  void init(uint64_t seed);
  void zero_grad();

  const LoraPairParams* find(const backend::Linear* w) const {
    const auto it = index_.find(w);
    return it == index_.end() ? nullptr : &pairs_[it->second];
  }
  LoraPairParams* find(const backend::Linear* w) {
    const auto it = index_.find(w);
    return it == index_.end() ? nullptr : &pairs_[it->second];
  }
  std::vector<LoraPairParams>& pairs() { return pairs_; }
  const std::vector<LoraPairParams>& pairs() const { return pairs_; }
  float scale() const { return spec_.alpha / static_cast<float>(spec_.rank); }
  const LoraSpec& spec() const { return spec_; }
  int64_t n_params() const;

  // Every parameter tensor and its gradient, for the optimizer (A then B per pair).
  std::vector<std::span<float>> params();
  std::vector<std::span<float>> grads();
  // The names of params() in order: the adapter's tensor names
  // ("blk.0.attn_q.weight.lora_a", ...), for checkpoints.
  std::vector<std::string> param_names() const;

  // Writes the adapter (llama.cpp's layout, general.architecture = the
  // base's) through a temporary file renamed into place.
  void save(const std::string& path) const;
  // The adapter as the inference path sees it (for evaluation and tests).
  std::shared_ptr<const model::LoraAdapter> to_adapter(const std::string& label) const;

 private:
  const model::Model& model_;
  LoraSpec spec_;
  std::vector<LoraPairParams> pairs_;
  std::unordered_map<const backend::Linear*, size_t> index_;
};

}  // namespace slm::train
