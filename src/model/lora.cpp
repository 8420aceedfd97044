// lora.h: reading llama.cpp-layout LoRA files, matching their tensors to the
// base model's matrices through the family's table, and stacking several
// adapters into one pair per matrix.
#include "model/lora.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string_view>

#include "base/error.h"
#include "base/fp16.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/model.h"

namespace slm::model {

namespace {

constexpr int64_t kMaxRank = 4096;

// A base matrix an adapter tensor may change: the Linear and, for a part of
// a fused tensor (Phi-3's attn_qkv), which rows of the adapter's B are its.
struct Target {
  const backend::Linear* w;
  int64_t row0, rows;
};

struct Targets {
  std::map<std::string, std::vector<Target>, std::less<>> by_name;
  std::map<std::string, std::string, std::less<>> refused;  // name -> why
  std::map<std::string, int64_t, std::less<>> n_out;        // rows of the whole (fused) tensor
  // A 3-d expert stack "blk.N.ffn_*_exps.weight": its Linear per expert.
  std::map<std::string, std::vector<const backend::Linear*>, std::less<>> experts;
};

Targets targets_of(const Model& m) {
  const ModelConfig& c = m.config();
  const Family& fam = *c.family;
  Targets t;
  for (const TensorSpec& s : fam.globals)
    if (s.kind == Kind::kMatrix || s.kind == Kind::kTable)
      t.refused[tensor_name(s, -1)] = "LoRA on the embedding or output matrix is not supported";
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const LayerWeights& l = m.weights().layers[static_cast<size_t>(i)];
    for (const TensorSpec& s : fam.layer) {
      if (!applies(s, c)) continue;
      const std::string name = tensor_name(s, i);
      if (s.kind == Kind::kMatrix && (l.*s.matrix).present()) {
        const backend::Linear& w = l.*s.matrix;
        t.by_name[name] = {{&w, 0, w.rows()}};
        t.n_out[name] = w.rows();
      } else if (s.kind == Kind::kFused) {
        int64_t row0 = 0;
        std::vector<Target> parts;
        for (const TensorSpec::Part& p : s.parts) {
          const backend::Linear& w = l.*p.matrix;
          if (!w.present()) continue;
          parts.push_back({&w, row0, w.rows()});
          row0 += w.rows();
        }
        t.by_name[name] = parts;
        t.n_out[name] = row0;
      } else if (s.kind == Kind::kExperts && !(l.*s.experts).empty()) {
        std::vector<const backend::Linear*>& ws = t.experts[name];
        for (const backend::Linear& w : l.*s.experts) ws.push_back(&w);
      }
    }
  }
  return t;
}

std::vector<float> floats_of(const gguf::TensorInfo& t, const std::string& where) {
  const int64_t n = t.n_elements();
  std::vector<float> out(static_cast<size_t>(n));
  if (t.type == DType::F32) {
    std::memcpy(out.data(), t.data, static_cast<size_t>(n) * sizeof(float));
  } else {
    const kernels::TypeTraits& tr = kernels::traits(t.type);
    if (tr.dequantize_row == nullptr || !row_fits(t.type, t.ne[0]))
      throw Error(where + ": tensor type " + std::string(dtype_name(t.type)) + " cannot be read");
    const int64_t rows = n / t.ne[0];
    const size_t rb = static_cast<size_t>(row_bytes(t.type, t.ne[0]));
    for (int64_t r = 0; r < rows; ++r)
      tr.dequantize_row(t.data + r * rb, &out[static_cast<size_t>(r * t.ne[0])], t.ne[0]);
  }
  for (const float f : out)
    if (!std::isfinite(f)) throw Error(where + ": holds a value that is not finite");
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::vector<LoraAdapter::Tensors> read_file(const Model& base, const LoraFile& lf) {
  const auto file = gguf::File::open(lf.path);
  const std::string& fn = lf.path;
  if (const auto type = file->get_string("general.type"); type && *type != "adapter")
    throw Error(fn + ": general.type is '" + std::string(*type) + "', not 'adapter'");
  const auto atype = file->get_string("adapter.type");
  if (!atype) throw Error(fn + ": no adapter.type key (expected 'lora')");
  if (*atype != "lora")
    throw Error(fn + ": adapter.type is '" + std::string(*atype) + "', only 'lora' is supported");
  const auto arch = file->get_string("general.architecture");
  const auto base_arch = base.file().get_string("general.architecture");
  if (!arch || !base_arch || *arch != *base_arch)
    throw Error(fn + ": the adapter is for architecture '" + std::string(arch ? *arch : "?") +
                "', the model is '" + std::string(base_arch ? *base_arch : "?") + "'");
  std::optional<double> alpha;
  if (file->find("adapter.lora.alpha") != nullptr) {
    alpha = file->get_float("adapter.lora.alpha");
    if (!alpha || !std::isfinite(*alpha) || *alpha < 0)
      throw Error(fn + ": adapter.lora.alpha must be a non-negative number");
  }
  std::map<std::string, std::pair<const gguf::TensorInfo*, const gguf::TensorInfo*>> pairs;
  for (const gguf::TensorInfo& t : file->tensors()) {
    const std::string name(t.name);
    if (ends_with(name, ".lora_a")) {
      pairs[name.substr(0, name.size() - 7)].first = &t;
    } else if (ends_with(name, ".lora_b")) {
      pairs[name.substr(0, name.size() - 7)].second = &t;
    } else {
      throw Error(fn + ": tensor '" + name + "' is neither a lora_a nor a lora_b");
    }
  }
  if (pairs.empty()) throw Error(fn + ": the adapter holds no tensors");
  std::vector<LoraAdapter::Tensors> out;
  for (const auto& [name, ab] : pairs) {
    const auto [a, b] = ab;
    if (a == nullptr || b == nullptr)
      throw Error(fn + ": tensor '" + name + (a ? ".lora_b" : ".lora_a") +
                  "' is missing (LoRA tensors come in pairs)");
    const std::string where = fn + ": tensor '" + name + "'";
    // Expert stacks (llama.cpp's layout for *_exps, applied there with
    // mul_mat_id): lora_a ne [n_in, r, n_expert], lora_b ne [r, n_out, n_expert].
    if (a->n_dims > 3 || b->n_dims > 3 || a->ne[3] != 1 || b->ne[3] != 1)
      throw Error(where + ": LoRA tensors are matrices or (experts) 3-d stacks of matrices");
    if (a->ne[2] != b->ne[2])
      throw Error(where + ": lora_a has " + std::to_string(a->ne[2]) + " experts but lora_b " +
                  std::to_string(b->ne[2]));
    const int64_t r = a->ne[1];
    if (r < 1 || r > kMaxRank)
      throw Error(where + ": rank " + std::to_string(r) + " is out of range");
    if (b->ne[0] != r)
      throw Error(where + ": lora_a has rank " + std::to_string(r) + " but lora_b " +
                  std::to_string(b->ne[0]));
    LoraAdapter::Tensors t;
    t.name = name;
    t.rank = r;
    t.n_expert = a->n_dims == 3 || b->n_dims == 3 ? a->ne[2] : 0;
    t.a = floats_of(*a, where + ".lora_a");
    t.b = floats_of(*b, where + ".lora_b");
    // llama.cpp's rule: alpha / rank when alpha is given, else 1.
    t.scale = lf.scale *
              (alpha && *alpha > 0 ? static_cast<float>(*alpha / static_cast<double>(r)) : 1.0f);
    // Shapes against the base are checked in build(); a's n_in and b's n_out ride along.
    if (static_cast<int64_t>(t.a.size()) != r * a->ne[0] * a->ne[2] ||
        static_cast<int64_t>(t.b.size()) != r * b->ne[1] * b->ne[2])
      throw Error(where + ": unexpected tensor size");
    out.push_back(std::move(t));
  }
  return out;
}

// The power of two e that brings a factor row's largest |v| into
// [2^14, 2^15): stored as F16 v * 2^-e, the row neither overflows nor
// underflows whatever the adapter's range, and (a power of two) gets no
// rounding beyond F16's own.
int row_exponent(const float* v, int64_t n) {
  float mx = 0;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, std::fabs(v[i]));
  if (!(mx > 0)) return 0;
  int e = 0;
  std::frexp(mx, &e);  // mx = f 2^e, f in [0.5, 1)
  return e - 15;
}

// A row v[0..n) as F16 v * 2^-e into out[0..n) (a multiplication by
// the exact power where it is a normal float; ldexp only for extreme rows).
void to_half(const float* v, int64_t n, int e, uint16_t* out) {
  const float f = std::ldexp(1.0f, -e);
  for (int64_t i = 0; i < n; ++i)
    out[i] = f32_to_fp16(std::isnormal(f) ? v[i] * f : std::ldexp(v[i], -e));
}

// Symmetric 8-bit quantization of v[0..n): q = round(v / d) with
// d = max|v| / 127 (0 for an all-zero group), so |q| <= 127 and the value
// used, float(q) * d, is within d / 2 of v.
float quantize_group(const float* v, int64_t n, int8_t* q) {
  float mx = 0;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, std::fabs(v[i]));
  const float d = mx / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = d > 0 ? std::nearbyint(v[i] / d) : 0.0f;
    q[i] = static_cast<int8_t>(std::clamp(x, -127.0f, 127.0f));
  }
  return d;
}

// A [r][n_in] and B^T [r][rows] (F32, scales folded in) as the 8-bit layouts
// of kernels.h LoraQ8Kernels: A's rows in groups of kLoraGroupA inputs,
// B^T's column blocks with a scale per (block, rank) row of kLoraCols.
// A group's float(q) * d is within d / 2 <= max|group| / 254 of its value,
// and with n_in >= 32 values a group's maximum keeps d small next to the
// factor's spread (the rounding errors, independent, mostly cancel in the
// dot products).
struct Q8Factors {
  std::vector<int8_t>& a8;
  std::vector<float>& a8_scale;
  std::vector<int8_t>& bt8;
  std::vector<float>& bt8_scale;
  std::vector<float>& scale;
};
void to_q8(const std::vector<float>& a, const std::vector<float>& bt, int64_t r, int64_t n_in,
           int64_t rows, const Q8Factors& o) {
  constexpr int64_t kCols = kernels::kLoraCols, kGroup = kernels::kLoraGroupA;
  const int64_t groups = kernels::lora_groups_a(n_in), blocks = (rows + kCols - 1) / kCols;
  o.a8.resize(static_cast<size_t>(r * n_in));
  o.a8_scale.resize(static_cast<size_t>(r * groups));
  o.bt8.assign(static_cast<size_t>(kernels::lora_bt_size(rows, r)), 0);
  o.bt8_scale.assign(static_cast<size_t>(blocks * r), 0.0f);
  o.scale.assign(static_cast<size_t>(r), 1.0f);
  for (int64_t k = 0; k < r; ++k) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * kGroup, n = std::min(kGroup, n_in - c0);
      o.a8_scale[static_cast<size_t>(k * groups + g)] = quantize_group(
          &a[static_cast<size_t>(k * n_in + c0)], n, &o.a8[static_cast<size_t>(k * n_in + c0)]);
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t j0 = b * kCols, n = std::min(kCols, rows - j0);
      o.bt8_scale[static_cast<size_t>(b * r + k)] =
          quantize_group(&bt[static_cast<size_t>(k * rows + j0)], n,
                         &o.bt8[static_cast<size_t>((b * r + k) * kCols)]);
    }
  }
}

}  // namespace

LoraFile parse_lora_argument(const std::string& arg) {
  LoraFile f;
  f.path = arg;
  const size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon + 1 < arg.size()) {
    const std::string tail = arg.substr(colon + 1);
    char* end = nullptr;
    const float s = std::strtof(tail.c_str(), &end);
    if (end == tail.c_str() + tail.size() && std::isfinite(s)) {
      f.path = arg.substr(0, colon);
      f.scale = s;
    }
  }
  if (f.path.empty()) throw Error("--lora: no file given in '" + arg + "'");
  return f;
}

std::shared_ptr<const LoraAdapter> LoraAdapter::load(const Model& base,
                                                     const std::vector<LoraFile>& files,
                                                     backend::LoraType type) {
  std::vector<Tensors> all;
  std::string label;
  for (const LoraFile& f : files) {
    std::vector<Tensors> t = read_file(base, f);
    for (Tensors& x : t) all.push_back(std::move(x));
    label += (label.empty() ? "" : "+") + f.path;
  }
  return build(base, std::move(all), label, type);
}

std::shared_ptr<const LoraAdapter> LoraAdapter::from_tensors(const Model& base,
                                                             std::vector<Tensors> tensors,
                                                             std::string label,
                                                             backend::LoraType type) {
  return build(base, std::move(tensors), std::move(label), type);
}

std::shared_ptr<const LoraAdapter> LoraAdapter::build(const Model& base,
                                                      std::vector<Tensors> tensors,
                                                      std::string label, backend::LoraType type) {
  static std::atomic<uint64_t> next_id{1};
  const Targets targets = targets_of(base);
  // Per base matrix, the pieces to stack: (tensor, rows of its B).
  struct Piece {
    const Tensors* t;
    int64_t row0;
  };
  std::map<const backend::Linear*, std::vector<Piece>> pieces;
  // Expert stacks split into one matrix pair per expert (a deque: pieces
  // point into it).
  std::deque<Tensors> slices;
  for (const Tensors& t : tensors) {
    const std::string where = label + ": tensor '" + t.name + "'";
    if (const auto r = targets.refused.find(t.name); r != targets.refused.end())
      throw Error(where + ": " + r->second);
    if (const auto ex = targets.experts.find(t.name); ex != targets.experts.end()) {
      const int64_t ne = static_cast<int64_t>(ex->second.size());
      const int64_t n_in = ex->second.front()->cols(), n_out = ex->second.front()->rows();
      if (t.n_expert != ne)
        throw Error(where + ": the model has " + std::to_string(ne) +
                    " experts here; an expert adapter is " + "3-d, lora_a [" +
                    std::to_string(n_in) + ", r, " + std::to_string(ne) + "] and lora_b [r, " +
                    std::to_string(n_out) + ", " + std::to_string(ne) + "]");
      if (t.rank < 1 || t.rank > kMaxRank)
        throw Error(where + ": rank " + std::to_string(t.rank) + " is out of range");
      if (static_cast<int64_t>(t.a.size()) != t.rank * n_in * ne ||
          static_cast<int64_t>(t.b.size()) != t.rank * n_out * ne)
        throw Error(where + ": lora_a must be [" + std::to_string(n_in) + ", " +
                    std::to_string(t.rank) + ", " + std::to_string(ne) + "] and lora_b [" +
                    std::to_string(t.rank) + ", " + std::to_string(n_out) + ", " +
                    std::to_string(ne) + "] for this expert stack");
      for (int64_t e = 0; e < ne; ++e) {
        Tensors& sl = slices.emplace_back();
        sl.name = t.name;
        sl.rank = t.rank;
        sl.scale = t.scale;
        const auto ra = static_cast<size_t>(t.rank * n_in),
                   rb = static_cast<size_t>(t.rank * n_out);
        sl.a.assign(t.a.begin() + static_cast<std::ptrdiff_t>(ra * e),
                    t.a.begin() + static_cast<std::ptrdiff_t>(ra * (e + 1)));
        sl.b.assign(t.b.begin() + static_cast<std::ptrdiff_t>(rb * e),
                    t.b.begin() + static_cast<std::ptrdiff_t>(rb * (e + 1)));
        pieces[ex->second[static_cast<size_t>(e)]].push_back({&sl, 0});
      }
      continue;
    }
    if (t.n_expert != 0)
      throw Error(where + ": a 3-d (expert) adapter for a matrix that is not an expert stack");
    const auto it = targets.by_name.find(t.name);
    if (it == targets.by_name.end()) throw Error(where + ": the model has no matrix of that name");
    if (t.rank < 1 || t.rank > kMaxRank)
      throw Error(where + ": rank " + std::to_string(t.rank) + " is out of range");
    const int64_t n_in = it->second.front().w->cols(), n_out = targets.n_out.at(t.name);
    if (static_cast<int64_t>(t.a.size()) != t.rank * n_in)
      throw Error(where + ": lora_a is [" +
                  std::to_string(static_cast<int64_t>(t.a.size()) / t.rank) + ", " +
                  std::to_string(t.rank) + "], the matrix takes " + std::to_string(n_in) +
                  " inputs");
    if (static_cast<int64_t>(t.b.size()) != t.rank * n_out)
      throw Error(where + ": lora_b is [" + std::to_string(t.rank) + ", " +
                  std::to_string(static_cast<int64_t>(t.b.size()) / t.rank) + "], the matrix has " +
                  std::to_string(n_out) + " outputs");
    for (const Target& tg : it->second) pieces[tg.w].push_back({&t, tg.row0});
  }
  std::shared_ptr<LoraAdapter> ad(new LoraAdapter());
  ad->id_ = next_id++;
  ad->label_ = std::move(label);
  std::vector<float> a, bt;  // one matrix's stacked factors in F32, before rounding
  for (const auto& [w, list] : pieces) {
    const int64_t n_in = w->cols(), rows = w->rows();
    int64_t r_total = 0;
    for (const Piece& p : list) r_total += p.t->rank;
    a.resize(static_cast<size_t>(r_total * n_in));
    bt.assign(static_cast<size_t>(r_total * rows), 0.0f);
    int64_t k0 = 0;
    for (const Piece& p : list) {
      const Tensors& t = *p.t;
      std::copy(t.a.begin(), t.a.end(), a.begin() + k0 * n_in);
      // B'^T [r_total][rows]: this piece's rows k0.., its rows of B, scaled.
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t k = 0; k < t.rank; ++k)
          bt[static_cast<size_t>((k0 + k) * rows + row)] =
              t.scale * t.b[static_cast<size_t>((p.row0 + row) * t.rank + k)];
      k0 += t.rank;
    }
    Owned& o = ad->pairs_[w];
    if (type == backend::LoraType::kQ8) {
      to_q8(a, bt, r_total, n_in, rows, {o.a8, o.a8_scale, o.bt8, o.bt8_scale, o.scale});
      o.f = {nullptr, nullptr,     o.scale.data(),    r_total,      n_in,
             rows,    o.a8.data(), o.a8_scale.data(), o.bt8.data(), o.bt8_scale.data()};
      ad->max_rank_ = std::max(ad->max_rank_, r_total);
      ad->max_rows_ = std::max(ad->max_rows_, rows);
      continue;
    }
    // F16 rows, each with its power of two (row_exponent); B^T in the
    // column blocks of kernels::lora_bt_size.
    o.a.resize(a.size());
    o.bt.assign(static_cast<size_t>(kernels::lora_bt_size(rows, r_total)), 0);
    o.scale.resize(static_cast<size_t>(r_total));
    constexpr int64_t kCols = kernels::kLoraCols;
    for (int64_t k = 0; k < r_total; ++k) {
      const float* ak = &a[static_cast<size_t>(k * n_in)];
      const float* bk = &bt[static_cast<size_t>(k * rows)];
      const int ea = row_exponent(ak, n_in), eb = row_exponent(bk, rows);
      to_half(ak, n_in, ea, &o.a[static_cast<size_t>(k * n_in)]);
      for (int64_t j0 = 0; j0 < rows; j0 += kCols)  // block by block
        to_half(bk + j0, std::min(kCols, rows - j0), eb,
                &o.bt[static_cast<size_t>((j0 / kCols * r_total + k) * kCols)]);
      o.scale[static_cast<size_t>(k)] = std::ldexp(1.0f, ea + eb);
    }
    o.f = {o.a.data(), o.bt.data(), o.scale.data(), r_total, n_in,
           rows,       nullptr,     nullptr,        nullptr, nullptr};
    ad->max_rank_ = std::max(ad->max_rank_, r_total);
    ad->max_rows_ = std::max(ad->max_rows_, rows);
  }
  return ad;
}

}  // namespace slm::model
