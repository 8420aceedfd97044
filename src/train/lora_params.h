// Trainable LoRA parameters for finetuning: per adapted base matrix W
// [n_in, n_out], A [r][n_in] and B [n_out][r] in float with their gradients,
// so that y = W x + scale * B (A x), scale = alpha / r (PEFT's and llama.cpp's
// convention). A mixture-of-experts stack (blk.N.ffn_{gate,up,down}_exps) is
// one entry holding a pair per expert, one after the other: llama.cpp's 3-d
// adapter layout (lora_a ne [n_in, r, n_expert], lora_b ne [r, n_out, n_expert]). Initialised as
// PEFT does: A Kaiming-uniform (bound 1 / sqrt(n_in)), B zero, so training starts from the base
// model exactly. Saved in llama.cpp's adapter layout (model/lora.h), loadable with
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
  const backend::Linear* w = nullptr;  // the base matrix (a stack: expert 0's slice)
  std::string name;                    // its GGUF name, e.g. "blk.0.attn_q.weight"
  int64_t n_in = 0, n_out = 0, rank = 0;
  // 0: one matrix. Else an expert stack: a, b (and their gradients) hold
  // n_expert pairs one after the other, [n_expert][rank][n_in] and
  // [n_expert][n_out][rank]; expert e's base matrix is (*experts)[e].
  int64_t n_expert = 0;
  const std::vector<backend::Linear>* experts = nullptr;
  std::vector<float> a, b;             // [rank][n_in], [n_out][rank] (x n_expert for a stack)
  std::vector<float> grad_a, grad_b;   // same shapes
  backend::Linear a_lin, b_lin;        // views over a and b for backend::Backend::linear
                                       // (a stack: one per expert in a_exp)
  std::vector<backend::Linear> a_exp;  // a stack: expert e's A [rank][n_in]

  // Expert e's slices (e = 0 for a single matrix).
  float* a_of(int64_t e) { return a.data() + e * rank * n_in; }
  const float* a_of(int64_t e) const { return a.data() + e * rank * n_in; }
  const float* b_of(int64_t e) const { return b.data() + e * n_out * rank; }
  float* grad_a_of(int64_t e) { return grad_a.data() + e * rank * n_in; }
  float* grad_b_of(int64_t e) { return grad_b.data() + e * n_out * rank; }
  const backend::Linear& a_linear(int64_t e) const {
    return n_expert == 0 ? a_lin : a_exp[static_cast<size_t>(e)];
  }
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
  // The pair of an expert stack (LayerWeights::gate_exps, ...), or nullptr.
  const LoraPairParams* find_stack(const std::vector<backend::Linear>& experts) const {
    const auto it = stack_index_.find(&experts);
    return it == stack_index_.end() ? nullptr : &pairs_[it->second];
  }
  LoraPairParams* find_stack(const std::vector<backend::Linear>& experts) {
    const auto it = stack_index_.find(&experts);
    return it == stack_index_.end() ? nullptr : &pairs_[it->second];
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
  std::unordered_map<const std::vector<backend::Linear>*, size_t> stack_index_;
};

}  // namespace slm::train
