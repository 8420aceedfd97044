// full_params.h: F32 masters of every weight over the family's tensor table,
// their initialisation from scratch and the whole-model file.
#include "train/full_params.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "base/error.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/model.h"
#include "model/quant_mix.h"

namespace slm::train {

namespace {

bool trainable_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// The tensor's values as float, [n_elements] row-major.
void to_floats(const gguf::TensorInfo& t, float* dst) {
  const int64_t cols = t.ne[0], rows = t.n_elements() / cols;
  if (t.type == DType::F32) {
    std::memcpy(dst, t.data, static_cast<size_t>(t.n_elements()) * sizeof(float));
    return;
  }
  const kernels::TypeTraits& tr = kernels::traits(t.type);
  const int64_t rb = row_bytes(t.type, cols);
  for (int64_t r = 0; r < rows; ++r) tr.dequantize_row(t.data + r * rb, dst + r * cols, cols);
}

}  // namespace

std::string FullParams::unsupported_reason(const model::Model& m) {
  const model::ModelConfig& c = m.config();
  const auto check = [&](const model::TensorSpec& s, int64_t il) -> std::string {
    // No family the trainer runs has a fused matrix (Phi-3's attn_qkv): left
    // refused until one does, so that its binding gets a gradient test.
    if (s.kind == model::Kind::kFused)
      return "tensor '" + model::tensor_name(s, il) +
             "' (a fused matrix) cannot be trained in full yet; train a LoRA adapter "
             "(finetune without --full) instead";
    const gguf::TensorInfo* t = m.file().find_tensor(model::tensor_name(s, il));
    if (t == nullptr || trainable_type(t->type)) return "";
    return "tensor '" + std::string(t->name) + "' is " + std::string(dtype_name(t->type)) +
           ": full training needs F32, F16 or BF16 weights; train a LoRA adapter on a quantized "
           "base "
           "(finetune without --full)";
  };
  for (const model::TensorSpec& s : c.family->globals)
    if (model::applies(s, c))
      if (std::string why = check(s, -1); !why.empty()) return why;
  for (int64_t il = 0; il < c.n_layer; ++il)
    for (const model::TensorSpec& s : c.family->layer)
      if (model::applies(s, c))
        if (std::string why = check(s, il); !why.empty()) return why;
  return "";
}

size_t FullParams::add(const std::string& name, const std::string& label,
                       std::vector<int64_t> shape, DType base_type, std::span<float> value) {
  FullTensor t;
  t.name = name;
  t.label = label;
  t.shape = std::move(shape);
  t.base_type = base_type;
  t.value = value;
  t.grad.assign(value.size(), 0.0f);
  tensors_.push_back(std::move(t));
  return tensors_.size() - 1;
}

FullParams::FullParams(const model::Model& model) : model_(model) {
  if (const std::string why = unsupported_reason(model); !why.empty())
    throw Error(model.file().name() + ": " + why);
  const model::ModelConfig& c = model.config();
  const gguf::File& f = model.file();
  // Masters are filled before any view is taken: tensors_ is sized once.
  size_t n_tensors = 0;
  for (const model::TensorSpec& s : c.family->globals)
    n_tensors += f.find_tensor(model::tensor_name(s, -1)) != nullptr;
  for (int64_t il = 0; il < c.n_layer; ++il)
    for (const model::TensorSpec& s : c.family->layer)
      n_tensors += f.find_tensor(model::tensor_name(s, il)) != nullptr;
  tensors_.reserve(n_tensors);
  live_.layers.resize(static_cast<size_t>(c.n_layer));

  // Binds one table entry of one layer (il = -1: a global) to live_.
  const auto bind = [&](const model::TensorSpec& s, int64_t il) {
    const std::string name = model::tensor_name(s, il);
    const gguf::TensorInfo* t = f.find_tensor(name);
    if (t == nullptr || !model::applies(s, c)) return;
    const std::string label = model::spec_label(s);
    std::vector<int64_t> shape(t->ne, t->ne + std::max(t->n_dims, 1));
    model::LayerWeights* lw = il >= 0 ? &live_.layers[static_cast<size_t>(il)] : nullptr;
    if (s.kind == model::Kind::kVector) {
      std::vector<float>& v = lw != nullptr ? lw->*s.vector : live_.*s.global_vector;
      v.resize(static_cast<size_t>(t->n_elements()));
      to_floats(*t, v.data());
      if (label == "rope") return;  // frequency divisors: not a weight
      index_[&v] = {add(name, label, shape, t->type, v), 0};
      return;
    }
    // The embedding table, a matrix or an expert stack: an owned master
    // [rows][cols] ([n_expert][rows][cols] for a stack).
    const size_t i = add(name, label, shape, t->type, {});
    FullTensor& ft = tensors_[i];
    ft.own.resize(static_cast<size_t>(t->n_elements()));
    to_floats(*t, ft.own.data());
    ft.value = ft.own;
    ft.grad.assign(ft.own.size(), 0.0f);
    const backend::MatrixView view{DType::F32, reinterpret_cast<const uint8_t*>(ft.own.data()),
                                   t->n_elements() / t->ne[0], t->ne[0]};
    if (s.kind == model::Kind::kTable) {
      live_.*s.global_table = view;
      index_[&(live_.*s.global_table)] = {i, 0};
    } else if (s.kind == model::Kind::kExperts && lw != nullptr) {
      // One Linear per expert slice [rows = ne[1]][cols = ne[0]], its
      // gradient the same slice of the stack's gradient. The vector is sized
      // once here, so the Linears' addresses (the index's keys) stay put.
      const int64_t rows = t->ne[1], cols = t->ne[0], per = rows * cols;
      std::vector<backend::Linear>& ex = lw->*s.experts;
      ex.clear();
      ex.resize(static_cast<size_t>(t->n_elements() / per));
      for (size_t x = 0; x < ex.size(); ++x) {
        const size_t off = x * static_cast<size_t>(per);
        ex[x].view = backend::MatrixView{
            DType::F32, reinterpret_cast<const uint8_t*>(ft.own.data() + off), rows, cols};
        ex[x].role = s.role;
        index_[&ex[x]] = {i, off};
      }
    } else {
      backend::Linear& l = lw != nullptr ? lw->*s.matrix : live_.*s.global_matrix;
      l.view = view;
      l.role = s.role;
      index_[&l] = {i, 0};
    }
  };
  for (const model::TensorSpec& s : c.family->globals) bind(s, -1);
  for (int64_t il = 0; il < c.n_layer; ++il)
    for (const model::TensorSpec& s : c.family->layer) bind(s, il);
  if (live_.token_embd.data == nullptr) throw Error(f.name() + ": no token embedding to train");
  // Tied embeddings: the output is the embedding's master, and so is its gradient.
  if (!live_.output.present()) {
    live_.output = backend::Linear{live_.token_embd, backend::Role::kOutput, nullptr, nullptr};
    index_[&live_.output] = index_.at(&live_.token_embd);
  }
}

void FullParams::init_scratch(uint64_t seed, float std) {
  std::mt19937_64 rng(seed);
  const float resid =
      std / std::sqrt(2.0f * static_cast<float>(std::max<int64_t>(1, model_.config().n_layer)));
  for (FullTensor& t : tensors_) {
    if (t.label == "norm") {
      std::fill(t.value.begin(), t.value.end(), 1.0f);
    } else if (t.label == "bias") {
      std::fill(t.value.begin(), t.value.end(), 0.0f);
    } else {
      const bool residual = t.label == "o" || t.label == "down" || t.label == "down experts";
      std::normal_distribution<float> d(0.0f, residual ? resid : std);
      for (float& x : t.value) x = d(rng);
    }
  }
  zero_grad();
}

void FullParams::zero_grad() {
  for (FullTensor& t : tensors_) std::fill(t.grad.begin(), t.grad.end(), 0.0f);
}

int64_t FullParams::n_params() const {
  int64_t n = 0;
  for (const FullTensor& t : tensors_) n += static_cast<int64_t>(t.value.size());
  return n;
}

std::vector<std::span<float>> FullParams::params() {
  std::vector<std::span<float>> out;
  for (FullTensor& t : tensors_) out.push_back(t.value);
  return out;
}

std::vector<std::span<float>> FullParams::grads() {
  std::vector<std::span<float>> out;
  for (FullTensor& t : tensors_) out.emplace_back(t.grad);
  return out;
}

std::vector<std::string> FullParams::names() const {
  std::vector<std::string> out;
  for (const FullTensor& t : tensors_) out.push_back(t.name);
  return out;
}

void FullParams::save(const std::string& path, std::optional<DType> type) const {
  if (type && !trainable_type(*type))
    throw Error("full training writes F32, F16 or BF16 weights, not " +
                std::string(dtype_name(*type)));
  const gguf::File& in = model_.file();
  std::unordered_map<std::string_view, const FullTensor*> trained;
  for (const FullTensor& t : tensors_) trained[t.name] = &t;
  gguf::Writer out;
  for (const gguf::KeyValue& kv : in.metadata()) {
    const std::string key(kv.key);
    if (key == "general.alignment")
      out.set_alignment(kv.value.u);  // the reader checked it is a power of two
    else if (key == "general.file_type" && type &&
             model::find_quant_mix(dtype_name(*type)) != nullptr)
      out.add_u32(key, static_cast<uint32_t>(model::find_quant_mix(dtype_name(*type))->ftype));
    else
      out.add_value(key, kv.value);
  }
  for (const gguf::TensorInfo& t : in.tensors()) {
    std::vector<int64_t> shape(t.ne, t.ne + std::max(t.n_dims, 1));
    const auto it = trained.find(t.name);
    if (it == trained.end()) {
      out.add_tensor_lazy(std::string(t.name), t.type, shape,
                          [&t](uint8_t* dst) { std::memcpy(dst, t.data, t.n_bytes); });
      continue;
    }
    const FullTensor* ft = it->second;
    const DType to = type.value_or(ft->base_type);
    out.add_tensor_lazy(ft->name, to, shape, [ft, to](uint8_t* dst) {
      if (to == DType::F32) {
        std::memcpy(dst, ft->value.data(), ft->value.size() * sizeof(float));
        return;
      }
      const int64_t cols = ft->shape[0], rows = static_cast<int64_t>(ft->value.size()) / cols;
      const int64_t rb = row_bytes(to, cols);
      const kernels::TypeTraits& tr = kernels::traits(to);
      for (int64_t r = 0; r < rows; ++r)
        tr.quantize_row(ft->value.data() + r * cols, dst + r * rb, cols);
    });
  }
  out.write(path);
}

}  // namespace slm::train
