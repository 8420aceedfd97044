#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/thread_pool.h"
#include "gguf/writer.h"
#include "kernels/kernels.h"

namespace slm::model {
namespace {

// Shapes from the models' published configurations.
const std::vector<SynthShape> kShapes = {
    {"qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 64, 4864, 151936, 32768, 1e6f, 1e-6f, true},
    {"qwen2.5-1.5b", "qwen2", 28, 1536, 12, 2, 128, 8960, 151936, 32768, 1e6f, 1e-6f, true},
    {"qwen3-0.6b", "qwen3", 28, 1024, 16, 8, 128, 3072, 151936, 40960, 1e6f, 1e-6f, true},
    {"llama-3.2-1b", "llama", 16, 2048, 32, 8, 64, 8192, 128256, 131072, 5e5f, 1e-5f, true, 0, 0, 0, true},
    {"tinyllama-1.1b", "llama", 22, 2048, 32, 4, 64, 5632, 32000, 2048, 1e4f, 1e-5f, false},
    {"smollm2-1.7b", "llama", 24, 2048, 32, 32, 64, 8192, 49152, 8192, 1.3e5f, 1e-5f, true},
    {"qwen3-30b-a3b", "qwen3moe", 48, 2048, 32, 4, 128, 6144, 151936, 40960, 1e6f, 1e-6f, false, 128, 8, 768},
    // A small mixture of experts (Mixtral layout): 32 experts, top 4, ~1.3B
    // parameters of which ~0.25B are active per token.
    {"moe-1.3b", "llama", 24, 1024, 16, 4, 64, 512, 32000, 4096, 1e4f, 1e-5f, false, 32, 4, 512},
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

bool is_k_mix(const std::string& mix) { return mix.size() > 2 && mix.substr(mix.size() - 2) == "_M"; }

// llama.cpp gives the first and last eighth of the layers, and every third in
// between, more bits for attn_v and ffn_down in its _M mixes.
bool more_bits(int64_t layer, int64_t n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

}  // namespace

const std::vector<SynthShape>& synth_shapes() { return kShapes; }

const SynthShape& find_synth_shape(const std::string& name) {
  for (const SynthShape& s : kShapes)
    if (s.name == name) return s;
  std::string known;
  for (const SynthShape& s : kShapes) known += (known.empty() ? "" : ", ") + s.name;
  throw Error("unknown shape '" + name + "' (known: " + known + ")");
}

std::vector<std::string> synth_mixes() {
  return {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL",
          "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q3_K_M", "Q4_K_M", "Q5_K_M"};
}

namespace {

DType fit_rows(DType t, int64_t row_len) {
  if (row_len % dtype_info(t).block_size == 0) return t;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K: return DType::IQ4_NL;
    case DType::Q4_K: return DType::Q5_0;
    case DType::Q5_K: return DType::Q5_1;
    case DType::Q6_K: return DType::Q8_0;
    default: return DType::F16;
  }
}

DType mix_type_unfitted(const std::string& mix, const std::string& tensor, int64_t layer, int64_t n_layer);

}  // namespace

DType mix_type(const std::string& mix, const std::string& tensor, int64_t layer, int64_t n_layer,
               int64_t row_len) {
  return fit_rows(mix_type_unfitted(mix, tensor, layer, n_layer), row_len);
}

namespace {

DType mix_type_unfitted(const std::string& mix, const std::string& tensor, int64_t layer, int64_t n_layer) {
  // Routers are tiny and routing is sensitive: llama.cpp never quantizes them.
  if (tensor.find("ffn_gate_inp") != std::string::npos) return DType::F32;
  const bool is_output = tensor == "output.weight";
  if (is_k_mix(mix)) {
    const std::string base = mix.substr(0, mix.size() - 2);  // "Q4_K"
    const DType low = *dtype_from_name(base);
    const DType up = base == "Q3_K" ? DType::Q4_K : base == "Q4_K" ? DType::Q6_K : DType::Q6_K;
    if (is_output) return DType::Q6_K;
    if ((tensor.find("attn_v") != std::string::npos || tensor.find("ffn_down") != std::string::npos) &&
        more_bits(layer, n_layer))
      return up;
    return low;
  }
  const auto t = dtype_from_name(mix);
  if (!t) throw Error("unknown type '" + mix + "'");
  // The output matrix decides every token's logits: the 2- to 5-bit recipes keep it at Q6_K as llama.cpp does.
  if (is_output && *t != DType::F32 && *t != DType::F16 && *t != DType::BF16 && *t != DType::Q8_0 && *t != DType::Q6_K)
    return DType::Q6_K;
  return *t;
}

}  // namespace

uint64_t write_synth(const SynthShape& s, const std::string& mix, const std::string& path, uint64_t seed,
                     ThreadPool& pool) {
  if (!is_k_mix(mix) && !dtype_from_name(mix)) throw Error("unknown type '" + mix + "'");
  gguf::Writer w;
  const std::string a = s.arch;
  w.add_string("general.architecture", a);
  w.add_string("general.name", "synthetic " + s.name + " " + mix);
  w.add_string("general.description", "random weights with the shapes of " + s.name + "; for benchmarks only");
  w.add_u32(a + ".context_length", static_cast<uint32_t>(s.n_ctx));
  w.add_u32(a + ".embedding_length", static_cast<uint32_t>(s.n_embd));
  w.add_u32(a + ".block_count", static_cast<uint32_t>(s.n_layer));
  w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(s.n_head));
  w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  w.add_u32(a + ".attention.key_length", static_cast<uint32_t>(s.head_dim));
  w.add_u32(a + ".attention.value_length", static_cast<uint32_t>(s.head_dim));
  w.add_u32(a + ".rope.dimension_count", static_cast<uint32_t>(s.head_dim));
  w.add_f32(a + ".rope.freq_base", s.rope_base);
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", s.norm_eps);
  w.add_u32(a + ".vocab_size", static_cast<uint32_t>(s.n_vocab));
  if (s.n_expert) {
    w.add_u32(a + ".expert_count", static_cast<uint32_t>(s.n_expert));
    w.add_u32(a + ".expert_used_count", static_cast<uint32_t>(s.n_expert_used));
    if (a == "qwen3moe") w.add_u32(a + ".expert_feed_forward_length", static_cast<uint32_t>(s.n_ff_expert));
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
    for (int64_t x = i; ; x /= 26) {
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

  uint64_t tensor_seed = seed;
  // A 2-d (or 3-d expert) matrix of random weights quantized to its mix type.
  auto matrix = [&](const std::string& name, std::vector<int64_t> shape, int64_t layer) {
    // A tied embedding is also the output matrix and gets its type, as in llama.cpp.
    const bool as_output = name == "token_embd.weight" && s.tied;
    const DType t = mix_type(mix, as_output ? "output.weight" : name, layer, s.n_layer, shape[0]);
    const int64_t cols = shape[0];
    int64_t rows = 1;
    for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    const uint64_t my_seed = ++tensor_seed * 0x9e3779b97f4a7c15ull;
    w.add_tensor_lazy(name, t, shape, [t, cols, rows, scale, my_seed, &pool](uint8_t* dst) {
      const kernels::TypeTraits& tr = kernels::traits(t);
      const int64_t rb = row_bytes(t, cols);
      constexpr int64_t kRowsPerTask = 64;
      pool.parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
        std::vector<float> row(cols);
        for (int64_t r = task * kRowsPerTask; r < std::min(rows, (task + 1) * kRowsPerTask); ++r) {
          Rng rng{my_seed ^ (static_cast<uint64_t>(r) * 0xbf58476d1ce4e5b9ull) ^ 1};
          for (float& x : row) x = rng.uniform() * scale;
          tr.quantize_row(row.data(), dst + r * rb, cols);
        }
      });
    });
  };
  auto vector = [&](const std::string& name, int64_t n, float base, float spread) {
    const uint64_t my_seed = ++tensor_seed;
    w.add_tensor_lazy(name, DType::F32, {n}, [n, base, spread, my_seed](uint8_t* dst) {
      Rng rng{my_seed * 0x94d049bb133111ebull | 1};
      for (int64_t i = 0; i < n; ++i) {
        const float v = base + spread * rng.uniform();
        std::memcpy(dst + 4 * i, &v, 4);
      }
    });
  };

  matrix("token_embd.weight", {s.n_embd, s.n_vocab}, -1);
  vector("output_norm.weight", s.n_embd, 1.0f, 0.1f);
  if (!s.tied) matrix("output.weight", {s.n_embd, s.n_vocab}, -1);
  if (s.llama3_rope) {
    // Llama 3.2's rope scaling (factor 32, low 1, high 4, original 8192) as the divisors llama.cpp expects.
    const int64_t half = s.head_dim / 2;
    w.add_tensor_lazy("rope_freqs.weight", DType::F32, {half}, [half, s](uint8_t* dst) {
      for (int64_t i = 0; i < half; ++i) {
        const double freq = std::pow(static_cast<double>(s.rope_base), -2.0 * i / s.head_dim);
        const double wavelen = 2 * 3.14159265358979323846 / freq;
        double div = 1;
        if (wavelen > 8192.0 / 1.0) {
          div = 32;
        } else if (wavelen >= 8192.0 / 4.0) {
          const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
          div = 1.0 / ((1 - smooth) / 32 + smooth);
        }
        const float f = static_cast<float>(div);
        std::memcpy(dst + 4 * i, &f, 4);
      }
    });
  }
  const int64_t qd = s.n_head * s.head_dim, kd = s.n_head_kv * s.head_dim;
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", s.n_embd, 1.0f, 0.1f);
    matrix(p + "attn_q.weight", {s.n_embd, qd}, l);
    matrix(p + "attn_k.weight", {s.n_embd, kd}, l);
    matrix(p + "attn_v.weight", {s.n_embd, kd}, l);
    matrix(p + "attn_output.weight", {qd, s.n_embd}, l);
    if (a == "qwen2") {
      vector(p + "attn_q.bias", qd, 0.0f, 0.1f);
      vector(p + "attn_k.bias", kd, 0.0f, 0.1f);
      vector(p + "attn_v.bias", kd, 0.0f, 0.1f);
    }
    if (a == "qwen3" || a == "qwen3moe") {
      vector(p + "attn_q_norm.weight", s.head_dim, 1.0f, 0.1f);
      vector(p + "attn_k_norm.weight", s.head_dim, 1.0f, 0.1f);
    }
    vector(p + "ffn_norm.weight", s.n_embd, 1.0f, 0.1f);
    if (s.n_expert) {
      matrix(p + "ffn_gate_inp.weight", {s.n_embd, s.n_expert}, l);
      matrix(p + "ffn_gate_exps.weight", {s.n_embd, s.n_ff_expert, s.n_expert}, l);
      matrix(p + "ffn_up_exps.weight", {s.n_embd, s.n_ff_expert, s.n_expert}, l);
      matrix(p + "ffn_down_exps.weight", {s.n_ff_expert, s.n_embd, s.n_expert}, l);
    } else {
      matrix(p + "ffn_gate.weight", {s.n_embd, s.n_ff}, l);
      matrix(p + "ffn_up.weight", {s.n_embd, s.n_ff}, l);
      matrix(p + "ffn_down.weight", {s.n_ff, s.n_embd}, l);
    }
  }
  w.write(path);
  return std::filesystem::file_size(path);
}

}  // namespace slm::model
