// The copy model's weights (see copy_model.h for the construction). Every
// tensor of the llama table is written: the constructed rows where the
// induction head needs them, random filler elsewhere.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "copy_model.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/quant_mix.h"
#include "model/weights.h"

namespace slm::bench {
namespace {

constexpr int64_t kHeadDim = 64;
constexpr int64_t kRot = 16;    // rope.dimension_count: 8 rotary pairs, 48 unrotated dims
constexpr int64_t kMatch = 24;  // code dims compared per token by layer 1
constexpr float kRopeBase = 2000.0f;
constexpr float kConst = 16.0f;  // residual dim 0 of every token
constexpr float kPrevW =
    28.0f;  // layer 0: score per rotary pair (gap to other distances >= 0.55 W)
constexpr float kMatchU = 5.0f;    // layer 1: score per matching code dim
constexpr float kRecency = 25.0f;  // layer 1: amplitude of the recency term
constexpr float kRecencyPhase = 0.8f;
constexpr float kFillerOut =
    0.01f;  // o-proj / down spread of the filler (relative to 1/sqrt(cols))

// Where things are in the residual (copy_model.h).
struct Layout {
  int64_t nv = 0;  // value heads: layer 1's KV heads that carry code slices
  int64_t dc = 0;  // code length, 64 * nv
  int64_t a = 1, b = 0, b2 = 0, c = 0;
  int64_t n_gqa = 0;          // query heads per KV head
  double rms0 = 0, rms1 = 0;  // RMS of the residual entering layers 0 and 1
};

Layout make_layout(const CopyModelShape& s) {
  Layout l;
  l.nv = std::min<int64_t>(s.n_head_kv, (s.n_embd - 1 - 2 * kMatch) / (2 * kHeadDim));
  if (l.nv < 1)
    throw Error("copy model: n_embd " + std::to_string(s.n_embd) +
                " cannot hold the construction (needs >= " +
                std::to_string(1 + 2 * kMatch + 2 * kHeadDim) + ")");
  if (s.n_layer < 2) throw Error("copy model: needs at least 2 layers");
  if (s.n_head % s.n_head_kv != 0 || s.n_head / s.n_head_kv < 2)
    throw Error("copy model: n_head must be a multiple (>= 2x) of n_head_kv");
  l.dc = kHeadDim * l.nv;
  l.b = l.a + l.dc;
  l.b2 = l.b + kMatch;
  l.c = l.b2 + kMatch;
  l.n_gqa = s.n_head / s.n_head_kv;
  const double E = static_cast<double>(s.n_embd);
  l.rms0 = std::sqrt((kConst * kConst + static_cast<double>(l.dc)) / E);
  l.rms1 = std::sqrt((kConst * kConst + static_cast<double>(l.dc + 2 * kMatch)) / E);
  return l;
}

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Component k of token t's +-1 code.
float code(uint64_t seed, int64_t t, int64_t k) {
  const uint64_t h =
      mix64(seed ^ mix64(static_cast<uint64_t>(t) * 1024 + static_cast<uint64_t>(k >> 6)));
  return (h >> (k & 63)) & 1 ? 1.0f : -1.0f;
}

double theta(int64_t pair) {
  return std::pow(static_cast<double>(kRopeBase), -2.0 * pair / kRot);
}

using RowFn = std::function<void(int64_t r, float* row)>;  // fills row r (zeroed before)

// A [rows][cols] matrix quantized to t as it is written.
void add_matrix(gguf::Writer& w, const std::string& name, DType t, int64_t cols, int64_t rows,
                RowFn fill, ThreadPool& pool) {
  if (!row_fits(t, cols))
    throw Error("copy model: " + name + " has rows of " + std::to_string(cols) +
                ", not a multiple of " + std::string(dtype_name(t)) + "'s block");
  w.add_tensor_lazy(
      name, t, {cols, rows}, [t, cols, rows, fill = std::move(fill), &pool](uint8_t* dst) {
        const kernels::TypeTraits& tr = kernels::traits(t);
        const int64_t rb = row_bytes(t, cols);
        constexpr int64_t kRowsPerTask = 64;
        pool.parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
          std::vector<float> row(static_cast<size_t>(cols));
          for (int64_t r = task * kRowsPerTask; r < std::min(rows, (task + 1) * kRowsPerTask);
               ++r) {
            std::fill(row.begin(), row.end(), 0.0f);
            fill(r, row.data());
            tr.quantize_row(row.data(), dst + r * rb, cols);
          }
        });
      });
}

// Uniform in [-spread, spread] / sqrt(cols), deterministic per (tensor, row).
RowFn random_rows(uint64_t tensor_seed, int64_t cols, float spread) {
  const float scale = spread / std::sqrt(static_cast<float>(cols));
  return [=](int64_t r, float* row) {
    uint64_t s = mix64(tensor_seed ^ mix64(static_cast<uint64_t>(r)));
    for (int64_t i = 0; i < cols; ++i) {
      s = mix64(s);
      row[i] = (static_cast<float>(s >> 40) * 0x1p-23f - 1.0f) * scale;
    }
  };
}

// Layer 0: query heads 0 and 1 look 1 and 2 positions back (on KV head 0)
// and copy the first kMatch code dims there into B and B2.
RowFn layer0(backend::Role role, const Layout& L) {
  const double u0 = kConst / L.rms0;           // residual dim 0 after the norm
  const double amp = std::sqrt(8.0 * kPrevW);  // q and k pair norms: q.k / sqrt(64) = W
  switch (role) {
    case backend::Role::kQ:
      return [=](int64_t r, float* row) {
        const int64_t h = r / kHeadDim, d = r % kHeadDim;
        if (h > 1 || d >= kRot) return;
        // q pair = amp e^{-i s theta}: after RoPE, q.k = amp^2 cos(theta (i - j - s)).
        const double ph = -static_cast<double>(h + 1) * theta(d / 2);
        row[0] = static_cast<float>(amp * (d % 2 == 0 ? std::cos(ph) : std::sin(ph)) / u0);
      };
    case backend::Role::kK:
      return [=](int64_t r, float* row) {
        if (r < kRot && r % 2 == 0) row[0] = static_cast<float>(amp / u0);
      };
    case backend::Role::kV:
      return [=](int64_t r, float* row) {
        if (r < kMatch) row[L.a + r] = static_cast<float>(L.rms0);
      };
    default:  // kO: [n_embd rows][n_head * 64 cols]
      return [=](int64_t r, float* row) {
        if (r >= L.b && r < L.b + kMatch) row[r - L.b] = 1.0f;
        if (r >= L.b2 && r < L.b2 + kMatch) row[kHeadDim + r - L.b2] = 1.0f;
      };
  }
}

// Layer 1: query head g * n_gqa (KV head g) matches (code(t_i), B_i) against
// (B_j, B2_j), prefers the latest match, and copies code(t_j)'s slice g into C.
RowFn layer1(backend::Role role, const Layout& L) {
  const double u1 = kConst / L.rms1;
  const double m = std::sqrt(8.0 * kMatchU) * L.rms1;  // per code dim: q.k / 8 = U
  const double rec = std::sqrt(8.0 * kRecency);
  constexpr int64_t kRecPair = kRot / 2 - 1;  // the slowest rotary pair
  switch (role) {
    case backend::Role::kQ:
      return [=](int64_t r, float* row) {
        const int64_t h = r / kHeadDim, d = r % kHeadDim;
        if (h % L.n_gqa != 0 || h / L.n_gqa >= L.nv) return;
        if (d == 2 * kRecPair) row[0] = static_cast<float>(rec * std::cos(kRecencyPhase) / u1);
        if (d == 2 * kRecPair + 1) row[0] = static_cast<float>(rec * std::sin(kRecencyPhase) / u1);
        if (d >= kRot && d < kRot + kMatch) row[L.a + d - kRot] = static_cast<float>(m);
        if (d >= kRot + kMatch) row[L.b + d - kRot - kMatch] = static_cast<float>(m);
      };
    case backend::Role::kK:
      return [=](int64_t r, float* row) {
        const int64_t g = r / kHeadDim, d = r % kHeadDim;
        if (g >= L.nv) return;
        if (d == 2 * kRecPair) row[0] = static_cast<float>(rec / u1);
        if (d >= kRot && d < kRot + kMatch) row[L.b + d - kRot] = static_cast<float>(m);
        if (d >= kRot + kMatch) row[L.b2 + d - kRot - kMatch] = static_cast<float>(m);
      };
    case backend::Role::kV:
      return [=](int64_t r, float* row) {
        const int64_t g = r / kHeadDim, d = r % kHeadDim;
        if (g < L.nv) row[L.a + kHeadDim * g + d] = static_cast<float>(L.rms1);
      };
    default:  // kO
      return [=](int64_t r, float* row) {
        if (r < L.c || r >= L.c + L.dc) return;
        const int64_t g = (r - L.c) / kHeadDim, d = (r - L.c) % kHeadDim;
        row[g * L.n_gqa * kHeadDim + d] = 1.0f;
      };
  }
}

void write_metadata(gguf::Writer& w, const CopyModelShape& s, const gguf::File& tok) {
  const std::string a = "llama";
  w.add_string("general.architecture", a);
  w.add_string("general.name", "copy model");
  w.add_string(
      "general.description",
      "an induction head in layers 0-1 and filler layers: copies its input; for benchmarks only");
  model::write_core_hparams(w, {.arch = a, .n_ctx = s.n_ctx, .n_embd = s.n_embd,
                                .n_layer = s.n_layer, .n_ff = s.n_ff, .n_head = s.n_head,
                                .n_head_kv = s.n_head_kv, .head_dim = kHeadDim, .n_rot = kRot,
                                .rope_base = kRopeBase, .norm_eps = 1e-5f});
  w.add_u32("general.quantization_version", 2);
  if (const model::QuantMix* qm = model::find_quant_mix(dtype_name(s.filler)))
    w.add_u32("general.file_type", static_cast<uint32_t>(qm->ftype));
  for (const gguf::KeyValue& kv : tok.metadata())
    if (kv.key.starts_with("tokenizer.")) w.add_value(std::string(kv.key), kv.value);
}

// pi^-1 for CopyModelShape::permute: a seeded shuffle of the normal tokens
// (token_type 1, or all without types); control and byte tokens map to themselves.
std::vector<int32_t> inverse_permutation(const gguf::File& tok, int64_t n_vocab, uint64_t seed) {
  std::vector<int32_t> normal;
  const gguf::Value* types = tok.find("tokenizer.ggml.token_type");
  const bool typed = types != nullptr && types->type == gguf::ValueType::ARRAY &&
                     types->elem_type == gguf::ValueType::I32 && types->elems != nullptr &&
                     types->count == static_cast<uint64_t>(n_vocab);
  for (int64_t t = 0; t < n_vocab; ++t)
    if (!typed || types->integer_at(static_cast<uint64_t>(t)) == 1)
      normal.push_back(static_cast<int32_t>(t));
  std::vector<int32_t> shuffled = normal;
  uint64_t s = mix64(seed ^ 0x5eedull);
  for (size_t i = shuffled.size(); i > 1; --i) {
    s = mix64(s);
    std::swap(shuffled[i - 1], shuffled[s % i]);
  }
  std::vector<int32_t> inv(static_cast<size_t>(n_vocab));
  for (int64_t t = 0; t < n_vocab; ++t) inv[static_cast<size_t>(t)] = static_cast<int32_t>(t);
  for (size_t i = 0; i < normal.size(); ++i)
    inv[static_cast<size_t>(shuffled[i])] = normal[i];  // pi(normal[i]) = shuffled[i]
  return inv;
}

}  // namespace

gguf::Writer copy_model_writer(const CopyModelShape& s, const gguf::File& tok, ThreadPool& pool) {
  const Layout L = make_layout(s);
  const gguf::Value* tokens = tok.find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->strs.empty())
    throw Error(tok.name() + ": no tokenizer.ggml.tokens to copy the vocabulary from");
  const auto n_vocab = static_cast<int64_t>(tokens->strs.size());

  const model::Family& fam = *model::find_family("llama");
  model::ModelConfig c;
  c.family = &fam;
  c.n_vocab = n_vocab;
  c.n_embd = s.n_embd;
  c.n_layer = s.n_layer;
  c.n_head = s.n_head;
  c.n_head_kv = s.n_head_kv;
  c.head_dim = c.head_dim_v = kHeadDim;
  c.n_rot = kRot;
  c.n_ff = s.n_ff;

  gguf::Writer w;
  write_metadata(w, s, tok);
  const uint64_t seed = s.seed;
  uint64_t tensor_seed = mix64(seed);
  auto vector = [&](const std::string& name, int64_t n) {
    const std::vector<float> ones(static_cast<size_t>(n),
                                  1.0f);  // the norms: scales live in the matrices
    w.add_tensor(name, DType::F32, {n},
                 {reinterpret_cast<const uint8_t*>(ones.data()), ones.size() * 4});
  };
  for (const model::TensorSpec& t : fam.globals) {
    if (t.global_vector == &model::ModelWeights::rope_freqs) continue;  // no RoPE scaling
    const std::string name = model::tensor_name(t, -1);
    const std::vector<int64_t> shape = model::tensor_shape(t, c);
    if (t.kind == model::Kind::kVector) {
      vector(name, shape[0]);
    } else if (t.kind == model::Kind::kTable) {  // [n_embd, n_vocab]: constant, code(t) in A
      add_matrix(
          w, name, s.embd, shape[0], shape[1],
          [=](int64_t r, float* row) {
            row[0] = kConst;
            for (int64_t k = 0; k < L.dc; ++k) row[L.a + k] = code(seed, r, k);
          },
          pool);
    } else {  // output [n_embd, n_vocab]: logits(t) = code(t) . C, or code(pi^-1(t)) . C
      std::vector<int32_t> inv;
      if (s.permute) inv = inverse_permutation(tok, n_vocab, seed);
      add_matrix(
          w, name, s.head, shape[0], shape[1],
          [=, inv = std::move(inv)](int64_t r, float* row) {
            const int64_t from = inv.empty() ? r : inv[static_cast<size_t>(r)];
            for (int64_t k = 0; k < L.dc; ++k) row[L.c + k] = code(seed, from, k);
          },
          pool);
    }
  }
  for (int64_t l = 0; l < s.n_layer; ++l)
    for (const model::TensorSpec& t : fam.layer) {
      if (!model::applies(t, c) || !model::required(t, c)) continue;
      const std::string name = model::tensor_name(t, l);
      const std::vector<int64_t> shape = model::tensor_shape(t, c);
      ++tensor_seed;
      if (t.kind == model::Kind::kVector) {
        vector(name, shape[0]);
        continue;
      }
      const bool attn = t.role == backend::Role::kQ || t.role == backend::Role::kK ||
                        t.role == backend::Role::kV || t.role == backend::Role::kO;
      if (attn && l < 2) {
        add_matrix(w, name, s.built, shape[0], shape[1],
                   l == 0 ? layer0(t.role, L) : layer1(t.role, L), pool);
        continue;
      }
      // Filler: o-proj and down (and layers 0-1's FFN) add ~nothing to the residual.
      const bool out = t.role == backend::Role::kO || t.role == backend::Role::kDown;
      add_matrix(w, name, s.filler, shape[0], shape[1],
                 random_rows(mix64(tensor_seed), shape[0], out ? kFillerOut : 1.0f), pool);
    }
  return w;
}

}  // namespace slm::bench
