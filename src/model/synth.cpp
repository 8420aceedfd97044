#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numbers>

#include "base/error.h"
#include "base/thread_pool.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/quant_mix.h"
#include "model/weights.h"

namespace slm::model {
namespace {

// Shapes from the models' published configurations.
const std::vector<SynthShape> kShapes = {
    {"qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 64, 4864, 151936, 32768, 1e6f, 1e-6f, true},
    {"qwen2.5-1.5b", "qwen2", 28, 1536, 12, 2, 128, 8960, 151936, 32768, 1e6f, 1e-6f, true},
    {"qwen3-0.6b", "qwen3", 28, 1024, 16, 8, 128, 3072, 151936, 40960, 1e6f, 1e-6f, true},
    {"llama-3.2-1b", "llama", 16, 2048, 32, 8, 64, 8192, 128256, 131072, 5e5f, 1e-5f, true, 0, 0, 0,
     {"llama3", 32, 1, 4, 8192, true}},
    {"tinyllama-1.1b", "llama", 22, 2048, 32, 4, 64, 5632, 32000, 2048, 1e4f, 1e-5f, false},
    {"smollm2-1.7b", "llama", 24, 2048, 32, 32, 64, 8192, 49152, 8192, 1.3e5f, 1e-5f, true},
    {"qwen3-30b-a3b", "qwen3moe", 48, 2048, 32, 4, 128, 6144, 151936, 40960, 1e6f, 1e-6f, false, 128, 8, 768},
    // A small mixture of experts (Mixtral layout): 32 experts, top 4, ~1.3B
    // parameters of which ~0.25B are active per token.
    {"moe-1.3b", "llama", 24, 1024, 16, 4, 64, 512, 32000, 4096, 1e4f, 1e-5f, false, 32, 4, 512},
    // Sliding windows, soft-caps and fused matrices (phi3's attn_qkv and gate+up).
    {"phi-3.5-mini", "phi3", 32, 3072, 32, 32, 96, 8192, 32064, 131072, 1e4f, 1e-5f, false, 0, 0, 0, {}, 262144},
    {"gemma-2-2b", "gemma2", 26, 2304, 8, 4, 256, 9216, 256000, 8192, 1e4f, 1e-6f, true, 0, 0, 0, {}, 4096, 50.0f,
     30.0f},
    {"gemma-3-1b", "gemma3", 26, 1152, 4, 1, 256, 6912, 262144, 32768, 1e6f, 1e-6f, true, 0, 0, 0, {}, 512},
};

// xoshiro-style generator; values ~ uniform in [-a, a] scaled like trained weights.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float uniform() { return static_cast<float>(static_cast<int64_t>(next() >> 11) - (int64_t{1} << 52)) * 0x1p-52f; }
};

}  // namespace

const std::vector<SynthShape>& synth_shapes() { return kShapes; }

const SynthShape& find_synth_shape(const std::string& name) {
  for (const SynthShape& s : kShapes)
    if (s.name == name) return s;
  std::string known;
  for (const SynthShape& s : kShapes) known += (known.empty() ? "" : ", ") + s.name;
  throw Error("unknown shape '" + name + "' (known: " + known + ")");
}

std::vector<std::string> synth_mixes() { return quant_mix_names(); }

namespace {

// The divisor llama3 scaling applies to a pair's frequency (rope_freqs.weight).
double llama3_divisor(const SynthRopeScaling& r, double freq) {
  const double wavelen = 2 * std::numbers::pi / freq;
  const double low = r.orig_ctx / r.low_freq, high = r.orig_ctx / r.high_freq;
  if (wavelen < high) return 1.0;
  if (wavelen > low) return r.factor;
  const double smooth = (r.orig_ctx / wavelen - r.low_freq) / (r.high_freq - r.low_freq);
  return 1.0 / ((1 - smooth) / r.factor + smooth);
}

void write_metadata(gguf::Writer& w, const SynthShape& s, const std::string& mix, const Family& fam) {
  const std::string a = s.arch;
  w.add_string("general.architecture", a);
  // The type is in general.file_type (as in real models), so `slm quantize` of
  // a synthetic F32 file gives the same bytes as synthesising the type directly.
  w.add_string("general.name", "synthetic " + s.name);
  w.add_string("general.description", "random weights with the shapes of " + s.name + "; for benchmarks only");
  write_core_hparams(w, {.arch = a, .n_ctx = s.n_ctx, .n_embd = s.n_embd, .n_layer = s.n_layer,
                         .n_ff = s.n_ff, .n_head = s.n_head, .n_head_kv = s.n_head_kv,
                         .head_dim = s.head_dim, .n_rot = s.head_dim, .rope_base = s.rope_base,
                         .norm_eps = s.norm_eps});
  const SynthRopeScaling& r = s.rope_scaling;
  if (!r.type.empty() && !r.as_tensor) {
    w.add_string(a + ".rope.scaling.type", r.type);
    w.add_f32(a + ".rope.scaling.factor", r.factor);
    w.add_f32(a + ".rope.scaling.low_freq_factor", r.low_freq);
    w.add_f32(a + ".rope.scaling.high_freq_factor", r.high_freq);
    w.add_u32(a + ".rope.scaling.original_context_length", static_cast<uint32_t>(r.orig_ctx));
  }
  if (s.n_swa) w.add_u32(a + ".attention.sliding_window", static_cast<uint32_t>(s.n_swa));
  if (s.attn_softcap > 0) w.add_f32(a + ".attn_logit_softcapping", s.attn_softcap);
  if (s.final_softcap > 0) w.add_f32(a + ".final_logit_softcapping", s.final_softcap);
  w.add_u32(a + ".vocab_size", static_cast<uint32_t>(s.n_vocab));
  if (s.n_expert) {
    w.add_u32(a + ".expert_count", static_cast<uint32_t>(s.n_expert));
    w.add_u32(a + ".expert_used_count", static_cast<uint32_t>(s.n_expert_used));
    if (fam.writes_expert_ff_length)
      w.add_u32(a + ".expert_feed_forward_length", static_cast<uint32_t>(s.n_ff_expert ? s.n_ff_expert : s.n_ff));
  }

  // Vocabulary: <unk> <s> </s>, the 256 byte pieces, then made-up words.
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  tokens.reserve(s.n_vocab);
  for (const char* sp : {"<unk>", "<s>", "</s>"}) {
    tokens.push_back(sp);
    scores.push_back(0);
    types.push_back(sp[1] == 'u' ? 2 : 3);
  }
  for (int b = 0; b < 256 && static_cast<int64_t>(tokens.size()) < s.n_vocab; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    scores.push_back(0);
    types.push_back(6);
  }
  static const char* kLetters = "etaoinshrdlucmfwypvbgkqjxz";
  for (int64_t i = 0; static_cast<int64_t>(tokens.size()) < s.n_vocab; ++i) {
    std::string word = "\xe2\x96\x81";  // "▁"
    for (int64_t x = i;; x /= 26) {
      word += kLetters[x % 26];
      if (x < 26) break;
    }
    tokens.push_back(word);
    scores.push_back(-static_cast<float>(i));
    types.push_back(1);
  }
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_f32s("tokenizer.ggml.scores", scores);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
  w.add_u32("general.quantization_version", 2);
  w.add_u32("general.file_type", static_cast<uint32_t>(find_quant_mix(mix)->ftype));
}

// Adds the tensors of s's family table to w: matrices random and quantized
// to their mix type, vectors around their Init centre.
void add_tensors(gguf::Writer& w, const SynthShape& s, const std::string& mix, uint64_t seed, ThreadPool& pool,
                 const SynthValues& on_values) {
  const Family& fam = *find_family(s.arch);
  ModelConfig c;
  c.family = &fam;
  c.n_vocab = s.n_vocab;
  c.n_embd = s.n_embd;
  c.n_layer = s.n_layer;
  c.n_head = s.n_head;
  c.n_head_kv = s.n_head_kv;
  c.head_dim = c.head_dim_v = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
  c.n_rot = c.head_dim;
  c.n_ff = s.n_ff;
  c.n_expert = s.n_expert;
  c.n_expert_used = s.n_expert_used;
  c.n_ff_expert = s.n_ff_expert ? s.n_ff_expert : s.n_ff;

  const QuantMix& qm = *find_quant_mix(mix);
  MixModelFacts facts;
  facts.n_layer = s.n_layer;
  facts.n_expert = s.n_expert;
  facts.n_gqa = s.n_head / s.n_head_kv;
  facts.has_output = !s.tied;  // a tied embedding is also the output matrix and gets its type

  uint64_t tensor_seed = seed;
  // A 2-d (or 3-d expert) matrix of random weights quantized to its mix type.
  auto matrix = [&](const std::string& name, std::vector<int64_t> shape, float spread) {
    const DType t = on_values || !is_quantizable(name, static_cast<int>(shape.size()))
                        ? DType::F32
                        : mix_type(qm, name, shape[0], facts);
    const int64_t cols = shape[0];
    int64_t rows = 1;
    for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
    const float scale = spread / std::sqrt(static_cast<float>(cols));
    const uint64_t my_seed = ++tensor_seed * 0x9e3779b97f4a7c15ull;
    auto fill_row = [=](int64_t r, float* row) {
      Rng rng{my_seed ^ (static_cast<uint64_t>(r) * 0xbf58476d1ce4e5b9ull) ^ 1};
      for (int64_t i = 0; i < cols; ++i) row[i] = rng.uniform() * scale;
    };
    if (on_values) {  // small test models: whole F32 tensors, seen before writing
      std::vector<float> v(static_cast<size_t>(rows * cols));
      for (int64_t r = 0; r < rows; ++r) fill_row(r, &v[r * cols]);
      on_values(name, v);
      w.add_tensor(name, DType::F32, shape, {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4});
      return;
    }
    w.add_tensor_lazy(name, t, shape, [t, cols, rows, fill_row, &pool](uint8_t* dst) {
      const kernels::TypeTraits& tr = kernels::traits(t);
      const int64_t rb = row_bytes(t, cols);
      constexpr int64_t kRowsPerTask = 64;
      pool.parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
        std::vector<float> row(cols);
        for (int64_t r = task * kRowsPerTask; r < std::min(rows, (task + 1) * kRowsPerTask); ++r) {
          fill_row(r, row.data());
          tr.quantize_row(row.data(), dst + r * rb, cols);
        }
      });
    });
  };
  auto vector = [&](const std::string& name, int64_t n, Init init, const std::vector<float>* fixed) {
    const uint64_t my_seed = fixed ? 0 : ++tensor_seed;
    std::vector<float> v(static_cast<size_t>(n));
    Rng rng{my_seed * 0x94d049bb133111ebull | 1};
    for (int64_t i = 0; i < n; ++i) v[i] = fixed ? (*fixed)[i] : init.center + init.spread * rng.uniform();
    if (on_values) on_values(name, v);
    w.add_tensor(name, DType::F32, {n}, {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4});
  };

  std::vector<float> divisors;
  if (s.rope_scaling.as_tensor)
    for (int64_t i = 0; i < c.n_rot / 2; ++i)
      divisors.push_back(static_cast<float>(
          llama3_divisor(s.rope_scaling, std::pow(static_cast<double>(s.rope_base), -2.0 * i / c.n_rot))));
  // Optional tensors are written only where the shape asks for them.
  for (const TensorSpec& t : fam.globals) {
    const std::string name = tensor_name(t, -1);
    if (t.global_matrix && s.tied) continue;
    if (t.global_vector == &ModelWeights::rope_freqs) {
      if (s.rope_scaling.as_tensor) vector(name, c.n_rot / 2, t.init, &divisors);
      continue;
    }
    if (t.kind == Kind::kVector)
      vector(name, tensor_shape(t, c)[0], t.init, nullptr);
    else
      matrix(name, tensor_shape(t, c), t.init.spread);
  }
  for (int64_t l = 0; l < s.n_layer; ++l)
    for (const TensorSpec& t : fam.layer) {
      if (!applies(t, c) || !required(t, c)) continue;
      const std::string name = tensor_name(t, l);
      if (t.kind == Kind::kVector)
        vector(name, tensor_shape(t, c)[0], t.init, nullptr);
      else
        matrix(name, tensor_shape(t, c), t.init.spread);
    }
}

gguf::Writer make_writer(const SynthShape& s, const std::string& mix, uint64_t seed, ThreadPool& pool,
                         const SynthValues& on_values) {
  if (find_quant_mix(mix) == nullptr) throw Error("unknown type '" + mix + "'");
  const Family* fam = find_family(s.arch);
  if (fam == nullptr) throw Error("unknown architecture '" + s.arch + "' (known: " + family_names() + ")");
  gguf::Writer w;
  write_metadata(w, s, mix, *fam);
  add_tensors(w, s, mix, seed, pool, on_values);
  return w;
}

}  // namespace

uint64_t write_synth(const SynthShape& s, const std::string& mix, const std::string& path, uint64_t seed,
                     ThreadPool& pool, const gguf::Writer::Progress& on_tensor) {
  make_writer(s, mix, seed, pool, {}).write(path, on_tensor);
  return std::filesystem::file_size(path);
}

uint64_t synth_file_size(const SynthShape& s, const std::string& mix) {
  ThreadPool pool(1);  // lazy tensors: nothing runs on it
  return make_writer(s, mix, 1, pool, {}).file_size();
}

std::vector<uint8_t> synth_bytes(const SynthShape& s, const std::string& mix, uint64_t seed, ThreadPool& pool,
                                 const SynthValues& on_values) {
  return make_writer(s, mix, seed, pool, on_values).to_bytes();
}

}  // namespace slm::model
