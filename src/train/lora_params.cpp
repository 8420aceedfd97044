// lora_params.h: trainable LoRA pairs over the family's tensor table, their
// initialisation and the adapter file.
#include "train/lora_params.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "base/error.h"
#include "gguf/writer.h"
#include "model/arch.h"
#include "model/lora.h"
#include "model/model.h"

namespace slm::train {

namespace {
constexpr int64_t kMaxRank = 1024;
}

std::vector<backend::Role> parse_targets(const std::string& list) {
  static const backend::Role kTrainable[] = {
      backend::Role::kQ,    backend::Role::kK,  backend::Role::kV,   backend::Role::kO,
      backend::Role::kGate, backend::Role::kUp, backend::Role::kDown};
  std::vector<backend::Role> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    bool found = false;
    for (const backend::Role r : kTrainable)
      if (backend::role_name(r) == item) {
        if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
        found = true;
      }
    if (!found)
      throw Error("unknown LoRA target '" + item + "' (choose from q,k,v,o,gate,up,down)");
  }
  if (out.empty()) throw Error("no LoRA targets given (choose from q,k,v,o,gate,up,down)");
  return out;
}

LoraParams::LoraParams(const model::Model& model, const LoraSpec& spec)
    : model_(model), spec_(spec) {
  if (spec.rank < 1 || spec.rank > kMaxRank)
    throw Error("LoRA rank " + std::to_string(spec.rank) + " is out of range (1.." +
                std::to_string(kMaxRank) + ")");
  if (!(spec.alpha > 0) || !std::isfinite(spec.alpha))
    throw Error("LoRA alpha must be a positive number");
  const model::ModelConfig& c = model.config();
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const model::LayerWeights& lw = model.weights().layers[static_cast<size_t>(il)];
    for (const model::TensorSpec& s : c.family->layer) {
      if (!model::applies(s, c)) continue;
      const backend::Linear* w = nullptr;
      const std::vector<backend::Linear>* experts = nullptr;
      if (s.kind == model::Kind::kMatrix) {
        w = &(lw.*s.matrix);
      } else if (s.kind == model::Kind::kExperts && !(lw.*s.experts).empty()) {
        experts = &(lw.*s.experts);
        w = &experts->front();
      }
      if (w == nullptr || !w->present()) continue;
      if (std::find(spec.targets.begin(), spec.targets.end(), w->role) == spec.targets.end())
        continue;
      LoraPairParams p;
      p.w = w;
      p.name = model::tensor_name(s, il);
      p.n_in = w->cols();
      p.n_out = w->rows();
      p.rank = spec.rank;
      if (experts != nullptr) {
        p.experts = experts;
        p.n_expert = static_cast<int64_t>(experts->size());
        for (const backend::Linear& e : *experts)
          if (e.rows() != p.n_out || e.cols() != p.n_in)
            throw Error(model.file().name() + ": " + p.name + ": experts of different shapes");
      }
      const int64_t copies = std::max<int64_t>(1, p.n_expert);
      p.a.assign(static_cast<size_t>(copies * p.rank * p.n_in), 0.0f);
      p.b.assign(static_cast<size_t>(copies * p.n_out * p.rank), 0.0f);
      p.grad_a.assign(p.a.size(), 0.0f);
      p.grad_b.assign(p.b.size(), 0.0f);
      pairs_.push_back(std::move(p));
    }
  }
  if (pairs_.empty()) throw Error(model.file().name() + ": no matrix matches the LoRA targets");
  // Views after the vector stops moving: they point at the pairs' own buffers.
  for (size_t i = 0; i < pairs_.size(); ++i) {
    LoraPairParams& p = pairs_[i];
    p.a_lin.view = {DType::F32, reinterpret_cast<const uint8_t*>(p.a.data()), p.rank, p.n_in};
    p.a_lin.role = p.w->role;
    p.b_lin.view = {DType::F32, reinterpret_cast<const uint8_t*>(p.b.data()), p.n_out, p.rank};
    p.b_lin.role = p.w->role;
    for (int64_t e = 0; e < p.n_expert; ++e) {
      backend::Linear a_e;
      a_e.view = {DType::F32, reinterpret_cast<const uint8_t*>(p.a_of(e)), p.rank, p.n_in};
      a_e.role = p.w->role;
      p.a_exp.push_back(std::move(a_e));
    }
    if (p.experts != nullptr)
      stack_index_[p.experts] = i;
    else
      index_[p.w] = i;
  }
}

void LoraParams::init(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (LoraPairParams& p : pairs_) {
    // PEFT: kaiming_uniform_(a=sqrt(5)) gives bound 1 / sqrt(fan_in).
    const float bound = 1.0f / std::sqrt(static_cast<float>(p.n_in));
    std::uniform_real_distribution<float> dist(-bound, bound);
    for (float& x : p.a) x = dist(rng);
    std::fill(p.b.begin(), p.b.end(), 0.0f);
  }
  zero_grad();
}

void LoraParams::zero_grad() {
  for (LoraPairParams& p : pairs_) {
    std::fill(p.grad_a.begin(), p.grad_a.end(), 0.0f);
    std::fill(p.grad_b.begin(), p.grad_b.end(), 0.0f);
  }
}

int64_t LoraParams::n_params() const {
  int64_t n = 0;
  for (const LoraPairParams& p : pairs_) n += static_cast<int64_t>(p.a.size() + p.b.size());
  return n;
}

std::vector<std::span<float>> LoraParams::params() {
  std::vector<std::span<float>> out;
  for (LoraPairParams& p : pairs_) {
    out.emplace_back(p.a);
    out.emplace_back(p.b);
  }
  return out;
}

std::vector<std::span<float>> LoraParams::grads() {
  std::vector<std::span<float>> out;
  for (LoraPairParams& p : pairs_) {
    out.emplace_back(p.grad_a);
    out.emplace_back(p.grad_b);
  }
  return out;
}

std::vector<std::string> LoraParams::param_names() const {
  std::vector<std::string> out;
  for (const LoraPairParams& p : pairs_) {
    out.push_back(p.name + ".lora_a");
    out.push_back(p.name + ".lora_b");
  }
  return out;
}

void LoraParams::save(const std::string& path) const {
  gguf::Writer w;
  const auto arch = model_.file().get_string("general.architecture");
  w.add_string("general.architecture", arch ? std::string(*arch) : model_.config().arch_name);
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", spec_.alpha);
  for (const LoraPairParams& p : pairs_) {
    // Copied while the file is written, one tensor at a time (the expert
    // stacks of a large mixture of experts are hundreds of MB).
    const auto from = [](const std::vector<float>& v) {
      return [&v](uint8_t* dst) { std::memcpy(dst, v.data(), v.size() * sizeof(float)); };
    };
    // A stack is llama.cpp's 3-d layout: its pairs are already stacked so.
    std::vector<int64_t> sa{p.n_in, p.rank}, sb{p.rank, p.n_out};
    if (p.n_expert > 0) {
      sa.push_back(p.n_expert);
      sb.push_back(p.n_expert);
    }
    w.add_tensor_lazy(p.name + ".lora_a", DType::F32, sa, from(p.a));
    w.add_tensor_lazy(p.name + ".lora_b", DType::F32, sb, from(p.b));
  }
  w.write(path);
}

std::shared_ptr<const model::LoraAdapter> LoraParams::to_adapter(const std::string& label) const {
  std::vector<model::LoraAdapter::Tensors> ts;
  for (const LoraPairParams& p : pairs_)
    ts.push_back({p.name, p.rank, p.a, p.b, scale(), p.n_expert});
  return model::LoraAdapter::from_tensors(model_, std::move(ts), label);
}

}  // namespace slm::train
