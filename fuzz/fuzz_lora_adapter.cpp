// libFuzzer target for the LoRA adapter loader (model/lora.h LoraAdapter::load):
// any file must either load into an adapter that adapts at least one matrix
// of the base with a positive rank, or fail with slm::Error; never crash or
// read out of bounds. The base is SLM_FUZZ_MODEL (default: the tiny-moe
// fixture, so expert stacks are reached as well as plain matrices).
//
// Input: first byte even = the rest is the adapter file as it is; odd = edits
// of a valid adapter made here for the base (attention and FFN pairs of
// layer 0, one of them an expert stack): bytes 1-4 the length kept (little
// endian, modulo the size + 1; 0xFFFFFFFF keeps all), then 5-byte records
// (offset, little endian modulo the size; a byte XORed in). Bit 1 of the
// first byte picks 8-bit factors (LoraType::kQ8) instead of F16.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "model/lora.h"
#include "model/model.h"

namespace {

std::string base_path() {
  if (const char* m = std::getenv("SLM_FUZZ_MODEL")) return m;
  const char* f = std::getenv("SLM_FIXTURES");
  return std::string(f != nullptr ? f : "../shared/fixtures") + "/models/tiny-moe.gguf";
}

// Rank-2 random pairs for the layer-0 attention and FFN matrices (2-D) and
// expert stacks (3-D: lora_a ne [n_in, r, n_expert], lora_b ne [r, n_out, n_expert]).
std::vector<uint8_t> valid_adapter(const slm::gguf::File& base) {
  constexpr int64_t kRank = 2;
  slm::gguf::Writer w;
  w.add_string("general.architecture", std::string(*base.get_string("general.architecture")));
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", 4.0f);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (const slm::gguf::TensorInfo& t : base.tensors()) {
    const std::string name(t.name);
    if (name.rfind("blk.0.", 0) != 0 || name.find("norm") != std::string::npos) continue;
    if (name.find("attn_") == std::string::npos && name.find("ffn_") == std::string::npos) continue;
    if (name.find("_inp") != std::string::npos || (t.n_dims != 2 && t.n_dims != 3)) continue;
    const int64_t n_in = t.ne[0], n_out = t.ne[1], n_e = t.n_dims == 3 ? t.ne[2] : 1;
    std::vector<float> a(static_cast<size_t>(n_in * kRank * n_e)),
        b(static_cast<size_t>(kRank * n_out * n_e));
    for (float& x : a) x = nd(rng);
    for (float& x : b) x = nd(rng);
    auto bytes = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                      v.size() * sizeof(float));
    };
    std::vector<int64_t> sa{n_in, kRank}, sb{kRank, n_out};
    if (t.n_dims == 3) sa.push_back(n_e), sb.push_back(n_e);
    w.add_tensor(name + ".lora_a", slm::DType::F32, sa, bytes(a));
    w.add_tensor(name + ".lora_b", slm::DType::F32, sb, bytes(b));
  }
  return w.to_bytes();
}

struct State {
  std::unique_ptr<slm::model::Model> base;
  std::vector<uint8_t> valid;
  std::string path;  // the file each input is written to, removed at exit
  State() = default;
  State(State&&) = default;
  ~State() {
    if (!path.empty()) std::remove(path.c_str());
  }
};

State& state() {
  static State s = [] {
    State st;
    const std::string path = base_path();
    try {
      st.base = slm::model::Model::load(path);
      st.valid = valid_adapter(st.base->file());
    } catch (const slm::Error& e) {
      std::fprintf(stderr, "fuzz_lora_adapter: cannot load %s: %s\n", path.c_str(), e.what());
      std::abort();
    }
    st.path = "/tmp/fuzz_lora_adapter." + std::to_string(::getpid()) + ".gguf";
    return st;
  }();
  return s;
}

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  State& s = state();
  std::vector<uint8_t> file;
  if ((data[0] & 1) == 0) {
    file.assign(data + 1, data + size);
  } else {
    file = s.valid;
    size_t i = 1;
    if (size >= 5) {
      const uint32_t keep = le32(data + 1);
      if (keep != 0xFFFFFFFFu) file.resize(keep % (file.size() + 1));
      i = 5;
    }
    for (; i + 5 <= size && !file.empty(); i += 5)
      file[le32(data + i) % file.size()] ^= data[i + 4];
  }
  FILE* f = std::fopen(s.path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!file.empty() && std::fwrite(file.data(), 1, file.size(), f) != file.size()) std::abort();
  std::fclose(f);
  const auto type = (data[0] & 2) != 0 ? slm::backend::LoraType::kQ8 : slm::backend::LoraType::kF16;
  try {
    const auto adapter = slm::model::LoraAdapter::load(*s.base, {{s.path, 1.0f}}, type);
    if (adapter == nullptr || adapter->n_matrices() == 0 || adapter->max_rank() < 1) std::abort();
  } catch (const slm::Error&) {
  }
  return 0;
}
