// `slm lora import` against merged weights: a PEFT folder (adapter_config.json
// and adapter_model.safetensors, written here in Hugging Face's order) is
// imported for the tiny-llama fixture and applied by the forward pass; the
// logits must equal those of a copy of the model whose matrices hold
// W + scale * B A merged in double here, with q/k rows of the delta moved
// from Hugging Face's rotate-half order to GGUF's interleaved order by an
// explicit reshape (not convert's helper). With and without rsLoRA; plus the
// config checks and refusals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "common/adapter_logits.h"
#include "common/fixtures.h"
#include "convert/peft.h"
#include "gguf/gguf.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::convert {
namespace {

using test::logits_of;
using test::max_rel_diff;

namespace fs = std::filesystem;

// One HF module's delta in PEFT's shapes: A [r][n_in], B [n_out][r].
struct HfDelta {
  int64_t layer;
  std::string module;  // "q_proj"
  std::string gguf;    // "attn_q"
  int64_t n_in = 0, n_out = 0;
  std::vector<float> a, b;
};

std::string module_path(const HfDelta& d) {
  const bool attn = d.gguf.rfind("attn", 0) == 0;
  return "model.layers." + std::to_string(d.layer) + (attn ? ".self_attn." : ".mlp.") + d.module;
}

// A safetensors file: 8-byte header length, JSON header, F32 data.
void write_safetensors(
    const fs::path& path,
    const std::vector<
        std::pair<std::string, std::pair<std::vector<int64_t>, const std::vector<float>*>>>& ts) {
  std::string header = "{";
  size_t off = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& [name, st] = ts[i];
    const size_t bytes = st.second->size() * sizeof(float);
    // Appended piece by piece (GCC 12's -Wrestrict misfires on one long
    // chain of operator+ here).
    if (i) header += ',';
    header.append("\"").append(name).append("\":{\"dtype\":\"F32\",\"shape\":[");
    header.append(std::to_string(st.first[0])).append(",").append(std::to_string(st.first[1]));
    header.append("],\"data_offsets\":[").append(std::to_string(off)).append(",");
    header.append(std::to_string(off + bytes)).append("]}");
    off += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  for (const auto& t : ts)
    out.write(reinterpret_cast<const char*>(t.second.second->data()),
              static_cast<std::streamsize>(t.second.second->size() * sizeof(float)));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// GGUF row of an HF q/k row: HF heads are [n_head][2][hd/2] (rotate-half),
// GGUF heads [n_head][hd/2][2] (interleaved pairs).
std::vector<int64_t> gguf_rows_from_hf(int64_t n_rows, int64_t n_head) {
  const int64_t hd = n_rows / n_head, half = hd / 2;
  std::vector<int64_t> from(static_cast<size_t>(n_rows));
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t two = 0; two < 2; ++two)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t hf_row = (h * 2 + two) * half + i;
        const int64_t gguf_row = (h * half + i) * 2 + two;
        from[static_cast<size_t>(gguf_row)] = hf_row;
      }
  return from;
}

const std::vector<int32_t> kTokens = {1,   450, 4996,  17354, 1701,  432, 17204,
                                      975, 278, 17366, 11203, 29889, 13};

class Peft : public ::testing::Test {
 protected:
  fs::path dir() const {
    return fs::temp_directory_path() / ("slm-peft-" + std::to_string(::getpid()));
  }
  void SetUp() override { fs::create_directories(dir()); }
  void TearDown() override { fs::remove_all(dir()); }

  // A PEFT folder with deltas on every module kind of layers 0 and 1 (the
  // attention projections only with attn_only, as for an MoE base), plus an
  // r x n_embd pair of zeros at each of extra_paths (module paths, for
  // refusals).
  std::vector<HfDelta> make_peft(const fs::path& folder, const gguf::File& f, int64_t r,
                                 double alpha, bool rslora, uint32_t seed, bool attn_only = false,
                                 const std::vector<std::string>& extra_paths = {}) {
    fs::create_directories(folder);
    const std::pair<const char*, const char*> mods[] = {
        {"q_proj", "attn_q"},      {"k_proj", "attn_k"},      {"v_proj", "attn_v"},
        {"o_proj", "attn_output"}, {"gate_proj", "ffn_gate"}, {"up_proj", "ffn_up"},
        {"down_proj", "ffn_down"}};
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.25f);
    std::vector<HfDelta> ds;
    for (int64_t layer = 0; layer < 2; ++layer)
      for (const auto& [m, g] : mods) {
        if (attn_only && std::string_view(g).rfind("attn", 0) != 0) continue;
        const gguf::TensorInfo* t =
            f.find_tensor("blk." + std::to_string(layer) + "." + g + ".weight");
        EXPECT_NE(t, nullptr);
        HfDelta d{layer, m, g, t->ne[0], t->ne[1], {}, {}};
        d.a.resize(static_cast<size_t>(r * d.n_in));
        d.b.resize(static_cast<size_t>(d.n_out * r));
        // Values F16 holds exactly (and alpha / r a power of two below): the
        // adapter's F16 copies (model/lora.h) then lose nothing.
        for (float& x : d.a) x = fp16_to_f32(f32_to_fp16(dist(rng)));
        for (float& x : d.b) x = fp16_to_f32(f32_to_fp16(dist(rng)));
        ds.push_back(std::move(d));
      }
    std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const std::vector<float>*>>>
        ts;
    for (const HfDelta& d : ds) {
      const std::string p = "base_model.model." + module_path(d);
      ts.push_back({p + ".lora_A.weight", {{r, d.n_in}, &d.a}});
      ts.push_back({p + ".lora_B.weight", {{d.n_out, r}, &d.b}});
    }
    const int64_t n_embd = model::read_config(f).n_embd;
    const std::vector<float> zeros(static_cast<size_t>(r * n_embd), 0.0f);
    for (const std::string& path : extra_paths) {
      ts.push_back({"base_model.model." + path + ".lora_A.weight", {{r, n_embd}, &zeros}});
      ts.push_back({"base_model.model." + path + ".lora_B.weight", {{n_embd, r}, &zeros}});
    }
    write_safetensors(folder / "adapter_model.safetensors", ts);
    std::ofstream(folder / "adapter_config.json")
        << R"({"peft_type":"LORA","base_model_name_or_path":"tiny","r":)" << r
        << R"(,"lora_alpha":)" << alpha << R"(,"lora_dropout":0.05,"bias":"none","use_rslora":)"
        << (rslora ? "true" : "false")
        << R"(,"use_dora":false,"modules_to_save":null,"rank_pattern":{},"alpha_pattern":{},)"
        << R"("target_modules":["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"],)"
        << R"("task_type":"CAUSAL_LM"})";
    return ds;
  }

  // W += scale * P(B) A in double, P the q/k row reshape when permute.
  static void merge(std::vector<uint8_t>& bytes, const gguf::File& f, const HfDelta& d,
                    double scale, bool permute) {
    const model::ModelConfig c = model::read_config(f);
    const gguf::TensorInfo* t =
        f.find_tensor("blk." + std::to_string(d.layer) + "." + d.gguf + ".weight");
    ASSERT_EQ(t->type, DType::F32);
    float* w = reinterpret_cast<float*>(bytes.data() + f.data_offset() + t->offset);
    const int64_t r = static_cast<int64_t>(d.a.size()) / d.n_in;
    std::vector<int64_t> from(static_cast<size_t>(d.n_out));
    for (int64_t i = 0; i < d.n_out; ++i) from[static_cast<size_t>(i)] = i;
    if (permute && d.gguf == "attn_q") from = gguf_rows_from_hf(d.n_out, c.n_head);
    if (permute && d.gguf == "attn_k") from = gguf_rows_from_hf(d.n_out, c.n_head_kv);
    for (int64_t o = 0; o < d.n_out; ++o)
      for (int64_t i = 0; i < d.n_in; ++i) {
        double acc = 0;
        for (int64_t k = 0; k < r; ++k)
          acc +=
              static_cast<double>(d.b[static_cast<size_t>(from[static_cast<size_t>(o)] * r + k)]) *
              d.a[static_cast<size_t>(k * d.n_in + i)];
        w[o * d.n_in + i] = static_cast<float>(w[o * d.n_in + i] + scale * acc);
      }
  }

  // Imports a PEFT folder for the fixture `model` and compares its logits with
  // the fixture's weights merged in double here (q/k rows of B reshaped when
  // permute: GGUF "llama" bases only).
  void check_import(const std::string& model, bool rslora, const std::string& arch, bool permute,
                    bool attn_only = false) {
    SLM_REQUIRE_FIXTURE("models/" + model);
    const std::string path = test::fixture("models/" + model);
    const auto base = model::Model::load(path);
    const gguf::File& f = base->file();
    ASSERT_GT(base->config().n_head, 1);
    const int64_t r = 4;
    const double alpha = 8.0;  // scale 2, or 4 with rsLoRA (r = 4)
    const std::vector<HfDelta> ds =
        make_peft(dir() / "peft", f, r, alpha, rslora, rslora ? 11 : 12, attn_only);
    const std::string out = (dir() / "adapter.gguf").string();
    const LoraImportResult res = import_peft((dir() / "peft").string(), path, out);
    EXPECT_EQ(res.arch, arch);
    EXPECT_EQ(res.n_pairs, static_cast<int64_t>(ds.size()));
    EXPECT_EQ(ds.size(), attn_only ? 8u : 14u);
    const double scale =
        rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
    EXPECT_NEAR(res.alpha, scale * r, 1e-5);
    EXPECT_FALSE(fs::exists(out + ".tmp"));

    std::vector<uint8_t> bytes = read_bytes(path), plain = read_bytes(path);
    auto file = gguf::File::parse(bytes, "merged");
    for (const HfDelta& d : ds) merge(bytes, *file, d, scale, permute);
    for (const HfDelta& d : ds) merge(plain, *file, d, scale, !permute);
    const auto merged = model::Model::from_file(gguf::File::parse(bytes, "merged"));
    const auto other = model::Model::from_file(gguf::File::parse(plain, "other order"));
    const auto ad = model::LoraAdapter::load(*base, {{out, 1.0f}});
    EXPECT_EQ(ad->n_matrices(), ds.size());
    const auto want = logits_of(*merged, nullptr, kTokens);
    const auto got = logits_of(*base, ad.get(), kTokens);
    EXPECT_GT(max_rel_diff(want, logits_of(*base, nullptr, kTokens)), 1e-2);  // the adapter matters
    // So does the row order of q/k: the other order (permuted where the base
    // is not, and back) gives other logits.
    EXPECT_GT(max_rel_diff(want, logits_of(*other, nullptr, kTokens)), 1e-3);
    EXPECT_LT(max_rel_diff(want, got), 2e-5);
  }
};

TEST_F(Peft, ImportEqualsMergedWeights) {
  check_import("tiny-llama.gguf", false, "llama", true);
}
TEST_F(Peft, ImportEqualsMergedWeightsRsLora) {
  check_import("tiny-llama.gguf", true, "llama", true);
}
// Qwen2 and Qwen3 keep Hugging Face's q/k row order in GGUF (NeoX RoPE): no
// permutation; Qwen2's q/k/v biases and Qwen3's q/k norms stay the base's.
TEST_F(Peft, ImportEqualsMergedWeightsQwen2) {
  check_import("tiny-qwen2.gguf", false, "qwen2", false);
}
TEST_F(Peft, ImportEqualsMergedWeightsQwen3RsLora) {
  check_import("tiny-qwen3.gguf", true, "qwen3", false);
}
// Mixture-of-experts bases: the attention projections (Mixtral, GGUF "llama",
// permuted; Qwen3-MoE not).
TEST_F(Peft, ImportOnMoeBasesAdaptsAttention) {
  check_import("tiny-moe.gguf", false, "llama", true, true);
  check_import("tiny-qwen3moe.gguf", true, "qwen3moe", false, true);
}
// One expert's delta in PEFT's shapes, for the GGUF stack it goes into.
struct HfExpertDelta {
  int64_t layer, expert;
  std::string path;   // "model.layers.0.mlp.experts.3.up_proj"
  std::string stack;  // "blk.0.ffn_up_exps.weight"
  int64_t n_in, n_out;
  std::vector<float> a, b;  // [r][n_in], [n_out][r]
};

// Expert modules as PEFT names them: Mixtral (GGUF "llama") w1/w3/w2 under
// block_sparse_moe, Qwen-MoE gate/up/down_proj under mlp. Every expert of
// layer 0's up projection and gate, and two experts of layer 1's down
// projection (the others stay without a delta).
TEST_F(Peft, ImportOfExpertModulesEqualsMergedExperts) {
  struct Case {
    const char* model;
    bool mixtral, rslora;
  };
  for (const Case& cs :
       {Case{"tiny-moe.gguf", true, false}, Case{"tiny-qwen3moe.gguf", false, true}}) {
    SCOPED_TRACE(cs.model);
    SLM_REQUIRE_FIXTURE(std::string("models/") + cs.model);
    const std::string path = test::fixture(std::string("models/") + cs.model);
    const auto base = model::Model::load(path);
    const gguf::File& f = base->file();
    const int64_t ne = base->config().n_expert, r = 4;
    ASSERT_GT(ne, 2);
    const double alpha = 8.0;
    const double scale = cs.rslora ? alpha / 2.0 : alpha / static_cast<double>(r);
    const char* parent = cs.mixtral ? "block_sparse_moe" : "mlp";
    struct Kind {
      int64_t layer;
      const char* peft_mixtral;
      const char* peft_qwen;
      const char* gguf;
      std::vector<int64_t> experts;
    };
    std::vector<int64_t> all(static_cast<size_t>(ne));
    for (int64_t e = 0; e < ne; ++e) all[static_cast<size_t>(e)] = e;
    const Kind kinds[] = {{0, "w3", "up_proj", "ffn_up_exps", all},
                          {0, "w1", "gate_proj", "ffn_gate_exps", all},
                          {1, "w2", "down_proj", "ffn_down_exps", {1, ne - 1}}};
    std::mt19937 rng(cs.rslora ? 51 : 52);
    std::normal_distribution<float> dist(0.0f, 0.25f);
    std::vector<HfExpertDelta> ds;
    for (const Kind& k : kinds) {
      const std::string stack = "blk." + std::to_string(k.layer) + "." + k.gguf + ".weight";
      const gguf::TensorInfo* t = f.find_tensor(stack);
      ASSERT_NE(t, nullptr) << stack;
      for (const int64_t e : k.experts) {
        HfExpertDelta d{k.layer,
                        e,
                        "model.layers." + std::to_string(k.layer) + "." + parent + ".experts." +
                            std::to_string(e) + "." + (cs.mixtral ? k.peft_mixtral : k.peft_qwen),
                        stack,
                        t->ne[0],
                        t->ne[1],
                        {},
                        {}};
        d.a.resize(static_cast<size_t>(r * d.n_in));
        d.b.resize(static_cast<size_t>(d.n_out * r));
        for (float& x : d.a) x = fp16_to_f32(f32_to_fp16(dist(rng)));  // F16-exact
        for (float& x : d.b) x = fp16_to_f32(f32_to_fp16(dist(rng)));
        ds.push_back(std::move(d));
      }
    }
    const fs::path folder = dir() / (cs.mixtral ? "mixtral" : "qwen");
    fs::create_directories(folder);
    std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const std::vector<float>*>>>
        ts;
    for (const HfExpertDelta& d : ds) {
      ts.push_back({"base_model.model." + d.path + ".lora_A.weight", {{r, d.n_in}, &d.a}});
      ts.push_back({"base_model.model." + d.path + ".lora_B.weight", {{d.n_out, r}, &d.b}});
    }
    write_safetensors(folder / "adapter_model.safetensors", ts);
    std::ofstream(folder / "adapter_config.json")
        << R"({"peft_type":"LORA","r":)" << r << R"(,"lora_alpha":)" << alpha << R"(,"use_rslora":)"
        << (cs.rslora ? "true" : "false") << R"(,"target_modules":)"
        << (cs.mixtral ? R"(["w1","w2","w3"])" : R"(["gate_proj","up_proj","down_proj"])") << "}";
    const std::string out = (dir() / "experts.gguf").string();
    const LoraImportResult res = import_peft(folder.string(), path, out);
    EXPECT_EQ(res.n_pairs, 3);  // three expert stacks
    {
      const auto ad_file = gguf::File::open(out);
      const gguf::TensorInfo* a = ad_file->find_tensor("blk.1.ffn_down_exps.weight.lora_a");
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->n_dims, 3);
      EXPECT_EQ(a->ne[1], r);
      EXPECT_EQ(a->ne[2], ne);
    }

    // The reference: each expert's slice W_e += scale * B A, in double.
    std::vector<uint8_t> bytes = read_bytes(path);
    auto file = gguf::File::parse(bytes, "merged");
    for (const HfExpertDelta& d : ds) {
      const gguf::TensorInfo* t = file->find_tensor(d.stack);
      ASSERT_EQ(t->type, DType::F32);
      float* w = reinterpret_cast<float*>(bytes.data() + file->data_offset() + t->offset) +
                 d.expert * d.n_in * d.n_out;
      for (int64_t o = 0; o < d.n_out; ++o)
        for (int64_t i = 0; i < d.n_in; ++i) {
          double acc = 0;
          for (int64_t k = 0; k < r; ++k)
            acc += static_cast<double>(d.b[static_cast<size_t>(o * r + k)]) *
                   d.a[static_cast<size_t>(k * d.n_in + i)];
          w[o * d.n_in + i] = static_cast<float>(w[o * d.n_in + i] + scale * acc);
        }
    }
    const auto merged = model::Model::from_file(gguf::File::parse(bytes, "merged"));
    const auto ad = model::LoraAdapter::load(*base, {{out, 1.0f}});
    EXPECT_EQ(ad->n_matrices(), static_cast<size_t>(3 * ne));
    const auto want = logits_of(*merged, nullptr, kTokens);
    EXPECT_GT(max_rel_diff(want, logits_of(*base, nullptr, kTokens)), 1e-2);
    EXPECT_LT(max_rel_diff(want, logits_of(*base, ad.get(), kTokens)), 2e-5);
  }
}

// The shared expert, a fused "experts" module, routers and malformed expert
// paths are refused by name.
TEST_F(Peft, MoeSharedExpertAndRoutersAreRefusedByName) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen3moe.gguf");
  const std::string path = test::fixture("models/tiny-qwen3moe.gguf");
  const auto base = gguf::File::open(path);
  for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
           {"model.layers.0.mlp.shared_expert.up_proj", "shared expert"},
           {"model.layers.0.mlp.experts.99.up_proj", "expert 99"},
           {"model.layers.0.block_sparse_moe.experts.1.up_proj", "unexpected module path"},
           {"model.layers.0.mlp.experts.x.gate_proj", "unexpected module path"},
           {"model.layers.0.block_sparse_moe.w1", "unexpected module path"}}) {
    fs::remove_all(dir() / "moe");
    make_peft(dir() / "moe", *base, 2, 4.0, false, 5, true, {extra});
    const std::string out = (dir() / "moe.gguf").string();
    try {
      import_peft((dir() / "moe").string(), path, out);
      ADD_FAILURE() << "accepted " << extra;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      EXPECT_NE(what.find(extra), std::string::npos) << what;
    }
    EXPECT_FALSE(fs::exists(out));
  }
  for (const auto& [targets, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"(["q_proj","experts"])", "fused 'experts' module"},
           {R"(["q_proj","gate"])", "router"}}) {
    try {
      parse_peft_config(R"({"r":2,"lora_alpha":4,"target_modules":)" + targets + "}", "c");
      ADD_FAILURE() << targets;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST_F(Peft, Refusals) {
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string path = test::fixture("models/tiny-llama.gguf");
  const auto base = gguf::File::open(path);
  make_peft(dir() / "p", *base, 2, 4.0, false, 3);
  const std::string cfg = (dir() / "p" / "adapter_config.json").string();
  auto expect_refused = [&](const std::string& config, const std::string& needle) {
    std::ofstream(cfg) << config;
    const std::string out = (dir() / "x.gguf").string();
    try {
      import_peft((dir() / "p").string(), path, out);
      ADD_FAILURE() << "accepted: " << config;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out));
  };
  const std::string all =
      R"("target_modules":["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"])";
  expect_refused(R"({"r":2,"lora_alpha":4,"use_dora":true,)" + all + "}", "DoRA");
  expect_refused(R"({"r":2,"lora_alpha":4,"target_modules":["q_proj","embed_tokens"]})",
                 "embeddings");
  expect_refused(R"({"r":2,"lora_alpha":4,"target_modules":["q_proj","lm_head"]})", "lm_head");
  expect_refused(R"({"r":2,"lora_alpha":4,"target_modules":["q_proj","fc_in"]})",
                 "'fc_in' is not supported");
  expect_refused(R"({"r":2,"lora_alpha":4,"target_modules":".*"})", "target_modules matches");
  expect_refused(R"x({"r":2,"lora_alpha":4,"target_modules":".*\\.(q_proj|v_proj)"})x",
                 "not in adapter_config.json");
  expect_refused(R"({"r":3,"lora_alpha":4,)" + all + "}", "expected [r=3");
  expect_refused(R"({"r":2,"lora_alpha":4,"modules_to_save":["lm_head"],)" + all + "}",
                 "modules_to_save");
  expect_refused(R"({"r":2,"lora_alpha":4,"rank_pattern":{"q_proj":8},)" + all + "}",
                 "rank_pattern");
  expect_refused(R"({"r":0,)" + all + "}", "r = 0");
  expect_refused(R"({"r":2,"peft_type":"IA3",)" + all + "}", "peft_type");
  expect_refused(
      R"x({"r":2,"target_modules":"((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))"})x",
      "nests");
  expect_refused(R"({"r":2,"target_modules":"(a)\\1"})", "regular expression");
  // A regex naming every supported module is accepted, as is "all-linear".
  for (const char* t : {R"x(".*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")x",
                        R"("all-linear")"}) {
    std::ofstream(cfg) << R"({"r":2,"lora_alpha":4,"target_modules":)" << t << "}";
    EXPECT_NO_THROW(import_peft((dir() / "p").string(), path, (dir() / "ok.gguf").string())) << t;
  }
  // A base of another family is refused by name.
  SLM_REQUIRE_FIXTURE("models/tiny-phi3.gguf");
  try {
    import_peft((dir() / "p").string(), test::fixture("models/tiny-phi3.gguf"),
                (dir() / "y.gguf").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("architecture 'phi3'"), std::string::npos) << e.what();
  }
}

TEST(PeftConfig, TargetsAndScale) {
  PeftConfig c = parse_peft_config(
      R"({"r":16,"lora_alpha":32,"target_modules":["q_proj","mlp.down_proj"]})", "c");
  EXPECT_DOUBLE_EQ(c.scale(), 2.0);
  EXPECT_TRUE(peft_targets(c, "model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(peft_targets(c, "model.layers.7.mlp.down_proj"));
  EXPECT_FALSE(peft_targets(c, "model.layers.0.self_attn.k_proj"));
  EXPECT_FALSE(peft_targets(c, "model.layers.0.self_attn.xq_proj"));
  c = parse_peft_config(
      R"({"r":16,"lora_alpha":32,"use_rslora":true,"target_modules":"model\\.layers\\.[01]\\..*proj"})",
      "c");
  EXPECT_DOUBLE_EQ(c.scale(), 8.0);
  EXPECT_TRUE(peft_targets(c, "model.layers.1.mlp.up_proj"));
  EXPECT_FALSE(peft_targets(c, "model.layers.2.mlp.up_proj"));
  EXPECT_THROW(parse_peft_config("[]", "c"), Error);
  EXPECT_THROW(parse_peft_config(R"({"r":"8","target_modules":["q_proj"]})", "c"), Error);
  EXPECT_THROW(parse_peft_config(R"({"r":8})", "c"), Error);
  EXPECT_THROW(parse_peft_config(R"({"r":8,"lora_alpha":-1,"target_modules":["q_proj"]})", "c"),
               Error);
}

}  // namespace
}  // namespace slm::convert
