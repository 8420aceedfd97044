#include "model/weights.h"

#include <cstring>
#include <string>

#include "base/error.h"
#include "base/fp16.h"

namespace slm::model {
namespace {

using backend::Linear;
using backend::MatrixView;

class Binder {
 public:
  Binder(const gguf::File& f, const ModelConfig& c) : f_(f), c_(c) {}

  // The tensor of t (layer < 0: a global one) with its shape checked, or
  // nullptr when it is absent and allowed to be.
  const gguf::TensorInfo* find(const TensorSpec& t, int64_t layer, const std::string& name) const {
    const gguf::TensorInfo* info = f_.find_tensor(name);
    if (info == nullptr) {
      if (required(t, c_)) throw Error(f_.name() + ": tensor '" + name + "' is missing");
      return nullptr;
    }
    const std::vector<int64_t> want = tensor_shape(t, c_);
    const int n = static_cast<int>(want.size());
    // Dimensions past the expected ones must be 1 (unused GGUF dims read as 1).
    bool ok = true;
    for (int d = 0; d < 4 && ok; ++d) ok = info->ne[d] == (d < n ? want[d] : 1);
    if (!ok) {
      std::string w, got;
      for (int d = 0; d < n; ++d) w += (d ? ", " : "") + std::to_string(want[d]);
      for (int d = 0; d < info->n_dims; ++d) got += (d ? ", " : "") + std::to_string(info->ne[d]);
      throw Error(f_.name() + ": tensor '" + name + "' has shape [" + got + "], expected [" + w + "]");
    }
    const bool is_float = info->type == DType::F32 || info->type == DType::F16 || info->type == DType::BF16;
    if (t.kind == Kind::kVector && !is_float)
      throw Error(f_.name() + ": tensor '" + name + "' must be F32, F16 or BF16, not " +
                  std::string(dtype_name(info->type)));
    if (n > 1 && !row_fits(info->type, want[0]))
      throw Error(f_.name() + ": tensor '" + name + "': rows do not fit the block size");
    return info;
  }

  static MatrixView matrix(const gguf::TensorInfo& t, int64_t slice = 0) {
    const size_t bytes = static_cast<size_t>(t.ne[1]) * static_cast<size_t>(row_bytes(t.type, t.ne[0]));
    return {t.type, t.data + static_cast<size_t>(slice) * bytes, t.ne[1], t.ne[0]};
  }

  // Rows [row0, row0 + rows) of a 2-d tensor: one part of a fused matrix.
  static MatrixView rows_of(const gguf::TensorInfo& t, int64_t row0, int64_t rows) {
    const size_t row = static_cast<size_t>(row_bytes(t.type, t.ne[0]));
    return {t.type, t.data + static_cast<size_t>(row0) * row, rows, t.ne[0]};
  }

  // A 1-d F32/F16/BF16 tensor as float32.
  static std::vector<float> floats(const gguf::TensorInfo& t) {
    const int64_t n = t.ne[0];
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h = 0;
      if (t.type == DType::F32) {
        std::memcpy(&out[i], t.data + 4 * i, 4);
        continue;
      }
      std::memcpy(&h, t.data + 2 * i, 2);
      out[i] = t.type == DType::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
    }
    return out;
  }

 private:
  const gguf::File& f_;
  const ModelConfig& c_;
};

Linear linear_of(const gguf::TensorInfo& t, backend::Role role, int64_t slice = 0) {
  Linear l;
  l.view = Binder::matrix(t, slice);
  l.role = role;
  return l;
}

}  // namespace

ModelWeights bind_weights(const gguf::File& file, ModelConfig& c) {
  const Family& fam = *c.family;
  // The vocabulary size is the embedding table's row count.
  for (const TensorSpec& t : fam.globals) {
    if (t.kind != Kind::kTable) continue;
    const gguf::TensorInfo* emb = file.find_tensor(t.name);
    if (emb == nullptr) throw Error(file.name() + ": tensor '" + t.name + "' is missing");
    c.n_vocab = emb->ne[1];
  }
  const Binder b(file, c);
  ModelWeights w;
  for (const TensorSpec& t : fam.globals) {
    const std::string name = tensor_name(t, -1);
    const gguf::TensorInfo* info = b.find(t, -1, name);
    if (info == nullptr) continue;
    if (t.global_table) w.*t.global_table = Binder::matrix(*info);
    if (t.global_vector) w.*t.global_vector = Binder::floats(*info);
    if (t.global_matrix) w.*t.global_matrix = linear_of(*info, t.role);
  }
  // Tied embeddings: the output matrix is the embedding table.
  if (!w.output.present()) w.output = Linear{w.token_embd, backend::Role::kOutput, nullptr, nullptr};

  w.layers.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LayerWeights& l = w.layers[i];
    for (const TensorSpec& t : fam.layer) {
      if (!applies(t, c)) continue;
      const gguf::TensorInfo* info = b.find(t, i, tensor_name(t, i));
      if (info == nullptr) continue;
      switch (t.kind) {
        case Kind::kVector: l.*t.vector = Binder::floats(*info); break;
        case Kind::kMatrix: l.*t.matrix = linear_of(*info, t.role); break;
        case Kind::kExperts: {
          std::vector<Linear>& e = l.*t.experts;
          e.clear();
          for (int64_t x = 0; x < info->ne[2]; ++x) e.push_back(linear_of(*info, t.role, x));
          break;
        }
        case Kind::kFused: {
          // Each part is its own Linear over its rows of the one tensor, so
          // it is prepared (packed) on its own, as a separate matrix would be.
          int64_t row0 = 0;
          for (const TensorSpec::Part& p : t.parts) {
            const int64_t rows = dim_value(p.rows, c);
            l.*p.matrix = Linear{Binder::rows_of(*info, row0, rows), p.role, nullptr, nullptr};
            row0 += rows;
          }
          break;
        }
        case Kind::kTable: break;
      }
    }
  }
  return w;
}

namespace {

template <typename W, typename L, typename F>
void walk_linears(W& w, const ModelConfig& c, F&& f) {
  const Family& fam = *c.family;
  for (const TensorSpec& t : fam.globals)
    if (t.global_matrix) f(w.*t.global_matrix);
  for (L& l : w.layers)
    for (const TensorSpec& t : fam.layer) {
      if (t.kind == Kind::kMatrix && (l.*t.matrix).present()) f(l.*t.matrix);
      if (t.kind == Kind::kFused)
        for (const TensorSpec::Part& p : t.parts)
          if ((l.*p.matrix).present()) f(l.*p.matrix);
      if (t.kind == Kind::kExperts)
        for (auto& e : l.*t.experts) f(e);
    }
}

}  // namespace

void for_each_linear(ModelWeights& w, const ModelConfig& c, const std::function<void(Linear&)>& f) {
  walk_linears<ModelWeights, LayerWeights>(w, c, f);
}

void for_each_linear(const ModelWeights& w, const ModelConfig& c, const std::function<void(const Linear&)>& f) {
  walk_linears<const ModelWeights, const LayerWeights>(w, c, f);
}

}  // namespace slm::model
