// Random-weight models built in memory with the GGUF writer, and an
// independent float64 forward pass to check slm's float32 one against.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace slm::test {

struct SynthSpec {
  std::string arch = "llama";
  int64_t n_vocab = 64, n_embd = 32, n_layer = 2, n_head = 4, n_head_kv = 2;
  int64_t head_dim = 0;  // 0: n_embd / n_head (no key_length key written)
  int64_t n_ff = 48, n_ctx_train = 64;
  int64_t n_expert = 0, n_expert_used = 0;
  float rope_base = 10000.0f;
  std::string rope_scaling;  // "", "linear", "llama3"
  float rope_factor = 1, low_freq = 1, high_freq = 4;
  int64_t orig_ctx = 64;
  bool rope_freqs_tensor = false;  // llama3 divisors as a tensor instead of metadata
  int64_t n_swa = 0;               // sliding window (the family says which layers)
  float attn_softcap = 0, final_softcap = 0;
  uint64_t seed = 1;
};

// Float weights by tensor name (ggml order: row-major [ne1][ne0]).
struct SynthModel {
  SynthSpec spec;
  std::map<std::string, std::vector<float>> w;
  std::vector<uint8_t> gguf;  // the serialized file
};

SynthModel make_synth(const SynthSpec& spec);

// logits [n_tokens][n_vocab] computed in double, written independently of slm's code.
std::vector<double> reference_forward(const SynthModel& m, const std::vector<int32_t>& tokens);

}  // namespace slm::test
