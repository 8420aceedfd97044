// The training forward and backward of a mixture-of-experts feed-forward
// (model/forward.cpp's ffn_moe): router -> softmax -> top-k (optionally
// renormalised) -> each chosen expert's SwiGLU FFN, weighted and summed.
// The experts and the router are frozen (run-time adapters cannot reach the
// expert matrices, so neither can training); the backward gives the input
// gradient through the experts (their transposed products on the stored
// weights) and through the routing weights into the router logits
// (train/moe_ops.h), so LoRA pairs before the layer get exact gradients.
//
// Ownership: refers to the model (must outlive it); owns its saved
// activations, sized once for max_n rows in n_slots sets (one per layer, or
// one with recomputation). Thread-safety: one caller; work is spread over
// the pool.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace slm {
class ThreadPool;
}
namespace slm::model {
class Model;
struct LayerWeights;
}  // namespace slm::model

namespace slm::train {

class MoeFfn {
 public:
  MoeFfn(const model::Model& model, int64_t max_n, int64_t n_slots, ThreadPool& pool);

  // proj [n][n_embd] = sum over each row's chosen experts e of w_e FFN_e(xn);
  // saves what the backward needs in set `slot`.
  void forward(const model::LayerWeights& lw, int64_t slot, const float* xn, int64_t n, float* proj,
               backend::Workspace& ws);
  // dxn [n][n_embd] = d/dxn of dot(dproj, proj) (written, not accumulated),
  // from the set `slot` saved by forward on the same xn.
  void backward(const model::LayerWeights& lw, int64_t slot, const float* dproj, int64_t n,
                float* dxn);

 private:
  // One layer's routing and expert activations. Routed entries are grouped
  // by expert: entries off[e]..off[e + 1] went to expert e, in row order.
  struct Saved {
    std::vector<float> probs;        // router softmax [n][n_expert]
    std::vector<int32_t> chosen;     // [n][k]
    std::vector<float> w;            // routing weights [n][k]
    std::vector<int32_t> off;        // [n_expert + 1]
    std::vector<int32_t> row, slot;  // entry -> its row and its index among the row's k
    std::vector<float> g, u;         // gate, up pre-activations [n * k][n_ff_expert]
    std::vector<float> y;            // expert outputs before weighting [n * k][n_embd]
  };

  const model::Model& m_;
  const backend::Backend& be_;
  ThreadPool& pool_;
  int64_t E_, NE_, K_, ff_;
  bool renormalize_;
  std::vector<Saved> saved_;
  // Scratch for one expert's rows (at most max_n: a row picks an expert once).
  std::vector<float> xin_, h_, dy_, dh_, dg_, du_, dxe_;  // [max_n][n_embd or n_ff_expert]
  std::vector<float> dw_, dlogits_, dp_;                  // [max_n][k], [max_n][n_expert] x 2
  std::vector<int32_t> order_;                            // [max_n][n_expert]
};

}  // namespace slm::train
