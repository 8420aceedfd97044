// A Hugging Face config.json read into what `slm convert` needs: which slm
// family (and GGUF architecture) the checkpoint is, its hyper-parameters and
// its RoPE scaling. Unknown architectures and features slm cannot run
// (unsupported rope_scaling types, MLP biases, partial MoE layers...) are
// refused by name. The JSON is untrusted: every field is type- and
// range-checked; errors are slm::Error naming the file and the key.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/arch.h"

namespace slm::convert {

// How a family's Hugging Face checkpoint differs from its GGUF form.
struct HfArch {
  std::string_view hf_name;    // config.json "architectures"[0]: "LlamaForCausalLM"
  std::string_view gguf_arch;  // general.architecture written: "llama"
  bool permute_qk = false;     // q_proj/k_proj rows: rotate-half -> interleaved (llama.cpp)
  bool norm_plus_one = false;  // Gemma: RMSNorm weights stored as w, GGUF holds 1 + w
  bool text_config = false;    // hyper-parameters under "text_config" (Gemma 3 multimodal)
};

// Every architecture `slm convert` accepts.
const std::vector<HfArch>& hf_architectures();
// "LlamaForCausalLM, MistralForCausalLM, ..." for error messages.
std::string hf_architecture_names();

enum class HfRopeScaling { kNone, kLinear, kLlama3, kLongRope };

struct HfConfig {
  const HfArch* arch = nullptr;          // never null after parse_hf_config
  const model::Family* family = nullptr;  // the slm family of arch->gguf_arch
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;        // config head_dim, or n_embd / n_head
  bool explicit_head_dim = false;
  int64_t n_rot = 0;           // head_dim * partial_rotary_factor
  int64_t n_ff = 0;
  int64_t n_ctx = 0;           // max_position_embeddings
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;
  bool tied = false;           // tie_word_embeddings: no output.weight
  bool attention_bias = false;

  HfRopeScaling rope_scaling = HfRopeScaling::kNone;
  float rope_factor = 1.0f;
  float rope_low_freq = 1.0f, rope_high_freq = 4.0f;  // llama3
  int64_t rope_orig_ctx = 0;                          // llama3 / longrope original context
  std::vector<float> rope_long_factor, rope_short_factor;  // longrope, [n_rot / 2] each

  int64_t n_swa = 0;           // sliding_window (0: none)
  float attn_softcap = 0.0f;   // Gemma 2
  float final_softcap = 0.0f;  // Gemma 2

  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_expert = 0;     // qwen3moe moe_intermediate_size
  int expert_weights_norm = -1;  // norm_topk_prob: -1 absent, 0/1

  int64_t bos_id = -1, eos_id = -1;  // config.json ids (-1: absent)
};

// Parses config.json text; name is used in errors.
HfConfig parse_hf_config(std::string_view json, const std::string& name);

}  // namespace slm::convert
