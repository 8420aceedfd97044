// Trainable full weights for `slm finetune --full` and `slm train`: an F32
// master copy of every weight of a llama-family model (token embedding,
// every norm, every matrix including the output and a mixture's router,
// q/k/v biases where present, expert stacks [n_expert][rows][cols] whose
// per-expert Linears view their slices) with a gradient buffer of the same
// shape, and a ModelWeights whose views
// point at the masters, so the Trainer's forward reads the weights being
// trained (matrices unprepared F32: no repacked copy to keep in sync).
// params()/grads()/names() list the tensors in one order (for the optimizer
// and, later, a generic checkpoint). A tied output shares the embedding's
// master and gradient.
//
// Ownership: refers to the base Model (its file supplies the metadata and any
// untrained tensor when saving), which must outlive it. Thread-safety: one
// trainer at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/dtype.h"
#include "model/weights.h"

namespace slm::model {
class Model;
}

namespace slm::train {

struct FullTensor {
  std::string name;              // GGUF name, e.g. "blk.0.attn_q.weight"
  std::string label;             // "embedding", "norm", "bias", or a matrix role ("q", "down", ...)
  std::vector<int64_t> shape;    // ggml order: shape[0] is the row length
  DType base_type = DType::F32;  // the type the base file stores it in
  std::vector<float> own;        // the master of a matrix or the embedding [rows][cols]
  std::span<float> value;        // the master (own, or the live weights' vector)
  std::vector<float> grad;       // same shape as value
};

class FullParams {
 public:
  // Copies every weight of model to F32. Throws slm::Error naming the tensor
  // when one is stored quantized (full training needs F32/F16/BF16 weights).
  explicit FullParams(const model::Model& model);
  FullParams(const FullParams&) = delete;
  FullParams& operator=(const FullParams&) = delete;

  // Why full training refuses a model's weights, or "" when it can train them.
  static std::string unsupported_reason(const model::Model& model);

  // The weights the forward reads: views over the masters.
  const model::ModelWeights& weights() const { return live_; }
  // The gradient buffer of a weight of weights() (a Linear, an expert's
  // Linear, a norm or bias vector, or the token embedding's MatrixView),
  // shaped as that weight, or nullptr.
  float* grad_of(const void* weight) {
    const auto it = index_.find(weight);
    return it == index_.end() ? nullptr
                              : tensors_[it->second.tensor].grad.data() + it->second.offset;
  }

  // Initialisation from scratch (`slm train`): matrices and the embedding
  // normal(0, std), the residual projections (attn_output, ffn_down) scaled
  // by 1/sqrt(2 n_layer) as GPT-2 does, norms 1, biases 0.
  void init_scratch(uint64_t seed, float std = 0.02f);
  void zero_grad();
  int64_t n_params() const;

  std::vector<FullTensor>& tensors() { return tensors_; }
  const std::vector<FullTensor>& tensors() const { return tensors_; }
  std::vector<std::span<float>> params();
  std::vector<std::span<float>> grads();
  std::vector<std::string> names() const;

  // Writes the whole model: the base file's metadata and tensors, trained
  // ones from the masters in type (F32, F16 or BF16; default: each tensor's
  // base type), through a temporary file renamed into place.
  void save(const std::string& path, std::optional<DType> type = std::nullopt) const;

 private:
  size_t add(const std::string& name, const std::string& label, std::vector<int64_t> shape,
             DType base_type, std::span<float> value);

  const model::Model& model_;
  std::vector<FullTensor> tensors_;
  model::ModelWeights live_;
  // A weight's tensor and where its values start in it (an expert's slice).
  struct Slot {
    size_t tensor = 0;
    size_t offset = 0;
  };
  std::unordered_map<const void*, Slot> index_;
};

}  // namespace slm::train
