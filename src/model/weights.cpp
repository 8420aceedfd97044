#include "model/weights.h"

#include <string>

#include "base/error.h"

namespace slm::model {
namespace {

class Binder {
 public:
  explicit Binder(const gguf::File& f) : f_(f) {}

  // Binds a tensor whose shape must be exactly `shape` (1 to 3 dims).
  Weight get(const std::string& name, std::initializer_list<int64_t> shape, bool required = true,
             bool float_only = false) const {
    const gguf::TensorInfo* t = f_.find_tensor(name);
    if (t == nullptr) {
      if (required) throw Error(f_.name() + ": tensor '" + name + "' is missing");
      return {};
    }
    Weight w;
    w.type = t->type;
    w.data = t->data;
    int i = 0;
    for (int64_t d : shape) w.ne[i++] = d;
    const int n = static_cast<int>(shape.size());
    // Dimensions past the expected ones must be 1 (unused GGUF dims read as 1).
    bool ok = true;
    for (int d = 0; d < 4 && ok; ++d) ok = t->ne[d] == (d < n ? w.ne[d] : 1);
    if (!ok) {
      std::string want, got;
      for (int d = 0; d < n; ++d) want += (d ? ", " : "") + std::to_string(w.ne[d]);
      for (int d = 0; d < t->n_dims; ++d) got += (d ? ", " : "") + std::to_string(t->ne[d]);
      throw Error(f_.name() + ": tensor '" + name + "' has shape [" + got + "], expected [" + want + "]");
    }
    if (float_only && t->type != DType::F32 && t->type != DType::F16 && t->type != DType::BF16)
      throw Error(f_.name() + ": tensor '" + name + "' must be F32, F16 or BF16, not " +
                  std::string(dtype_name(t->type)));
    if (n > 1 && !row_fits(t->type, w.ne[0]))
      throw Error(f_.name() + ": tensor '" + name + "': rows do not fit the block size");
    return w;
  }

 private:
  const gguf::File& f_;
};

}  // namespace

ModelWeights bind_weights(const gguf::File& file, ModelConfig& c) {
  const Binder b(file);
  ModelWeights w;
  const gguf::TensorInfo* emb = file.find_tensor("token_embd.weight");
  if (emb == nullptr) throw Error(file.name() + ": tensor 'token_embd.weight' is missing");
  c.n_vocab = emb->ne[1];
  w.token_embd = b.get("token_embd.weight", {c.n_embd, c.n_vocab});
  w.output_norm = b.get("output_norm.weight", {c.n_embd}, true, true);
  w.output = b.get("output.weight", {c.n_embd, c.n_vocab}, false);
  if (!w.output.present()) w.output = w.token_embd;  // tied embeddings
  w.rope_freqs = b.get("rope_freqs.weight", {c.n_rot / 2}, false, true);

  const bool qwen2 = c.arch == Arch::kQwen2;
  const bool qk_norm = c.arch == Arch::kQwen3 || c.arch == Arch::kQwen3Moe;
  w.layers.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[i];
    l.attn_norm = b.get(p + "attn_norm.weight", {c.n_embd}, true, true);
    l.wq = b.get(p + "attn_q.weight", {c.n_embd, c.q_dim()});
    l.wk = b.get(p + "attn_k.weight", {c.n_embd, c.kv_dim()});
    l.wv = b.get(p + "attn_v.weight", {c.n_embd, c.v_dim()});
    l.wo = b.get(p + "attn_output.weight", {c.n_head * c.head_dim_v, c.n_embd});
    // Biases are required by qwen2 and allowed (some llama finetunes) elsewhere.
    l.bq = b.get(p + "attn_q.bias", {c.q_dim()}, qwen2, true);
    l.bk = b.get(p + "attn_k.bias", {c.kv_dim()}, qwen2, true);
    l.bv = b.get(p + "attn_v.bias", {c.v_dim()}, qwen2, true);
    l.q_norm = b.get(p + "attn_q_norm.weight", {c.head_dim}, qk_norm, true);
    l.k_norm = b.get(p + "attn_k_norm.weight", {c.head_dim}, qk_norm, true);
    l.ffn_norm = b.get(p + "ffn_norm.weight", {c.n_embd}, true, true);
    if (c.is_moe()) {
      l.gate_inp = b.get(p + "ffn_gate_inp.weight", {c.n_embd, c.n_expert});
      l.gate_exps = b.get(p + "ffn_gate_exps.weight", {c.n_embd, c.n_ff_expert, c.n_expert});
      l.up_exps = b.get(p + "ffn_up_exps.weight", {c.n_embd, c.n_ff_expert, c.n_expert});
      l.down_exps = b.get(p + "ffn_down_exps.weight", {c.n_ff_expert, c.n_embd, c.n_expert});
    } else {
      l.ffn_gate = b.get(p + "ffn_gate.weight", {c.n_embd, c.n_ff});
      l.ffn_up = b.get(p + "ffn_up.weight", {c.n_embd, c.n_ff});
      l.ffn_down = b.get(p + "ffn_down.weight", {c.n_ff, c.n_embd});
    }
  }
  return w;
}

}  // namespace slm::model
