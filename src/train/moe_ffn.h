// The training forward and backward of a mixture-of-experts feed-forward
// (model/forward.cpp's ffn_moe): router -> softmax -> top-k (optionally
// renormalised) -> each chosen expert's SwiGLU FFN, weighted and summed.
// The experts and the router are frozen, or (full training, set_full) are
// FullParams' masters and get weight gradients: expert e's matrices only
// from the rows routed to it, through their routing weights (the same
// outer products as a dense matrix's, over those rows), the router from
// every row through the routing. LoRA pairs on the expert stacks
// (LoraParams' stacks, one pair per expert) add scale * B_e (A_e x) to
// expert e's gate, up and down products, and each expert's pair gets
// gradients only from the rows routed to it (weighted by their routing
// weights, through the expert's output). The backward gives the input
// gradient through the experts (their transposed products on the stored
// weights, plus the LoRA terms) and through the routing weights into the
// router logits (train/moe_ops.h), so LoRA pairs before the layer get exact
// gradients too.
//
// Ownership: refers to the model and the LoRA parameters (both must outlive
// it); owns its saved activations, sized once for max_n rows in n_slots sets
// (one per layer, or one with recomputation). Thread-safety: one caller;
// work is spread over the pool.
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

class FullParams;
class LoraParams;
struct LoraPairParams;

class MoeFfn {
 public:
  // lora: the trained pairs (null: none); its expert stacks are applied.
  MoeFfn(const model::Model& model, LoraParams* lora, int64_t max_n, int64_t n_slots,
         ThreadPool& pool);

  // Full training: the layers passed in are full's live weights (plain F32
  // views), and their gradients accumulate into full's buffers.
  void set_full(FullParams* full) { full_ = full; }

  // proj [n][n_embd] = sum over each row's chosen experts e of w_e FFN_e(xn)
  // (with the experts' LoRA terms when lora_on); saves what the backward
  // needs in set `slot`.
  void forward(const model::LayerWeights& lw, int64_t slot, const float* xn, int64_t n, float* proj,
               backend::Workspace& ws, bool lora_on);
  // dxn [n][n_embd] = d/dxn of dot(dproj, proj) (written, not accumulated),
  // from the set `slot` saved by forward on the same xn [n][n_embd] and
  // lora_on; the expert pairs' gradients (full training: the experts' and
  // the router's weight gradients) accumulate.
  void backward(const model::LayerWeights& lw, int64_t slot, const float* xn, const float* dproj,
                int64_t n, float* dxn, bool lora_on);

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
    std::vector<float> lu[3];        // A x of the gate, up, down pairs [n * k][rank] (if adapted)
  };
  // The LoRA stacks of a layer's gate, up and down experts (null: not adapted).
  struct Stacks {
    LoraPairParams* p[3] = {nullptr, nullptr, nullptr};
  };
  Stacks stacks(const model::LayerWeights& lw, bool lora_on) const;

  const model::Model& m_;
  const backend::Backend& be_;
  LoraParams* lora_;
  FullParams* full_ = nullptr;
  ThreadPool& pool_;
  int64_t E_, NE_, K_, ff_;
  bool renormalize_;
  std::vector<Saved> saved_;
  // Scratch for one expert's rows (at most max_n: a row picks an expert once).
  std::vector<float> xin_, h_, dy_, dh_, dg_, du_, dxe_;     // [max_n][n_embd or n_ff_expert]
  std::vector<float> dw_, dlogits_, dp_;                     // [max_n][k], [max_n][n_expert] x 2
  std::vector<int32_t> order_;                               // [max_n][n_expert]
  std::vector<float> lora_bt_, lora_d_, lora_tmp_, wg_tmp_;  // LoRA scratch (grown as needed)
};

}  // namespace slm::train
