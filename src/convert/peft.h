// `slm lora import`: a Hugging Face PEFT LoRA folder (adapter_config.json and
// adapter_model.safetensors) to a GGUF in llama.cpp's LoRA layout
// (general.type = "adapter", adapter.type = "lora", adapter.lora.alpha,
// general.architecture = the base's; "<base matrix>.lora_a" ne [n_in, r] and
// ".lora_b" ne [r, n_out], F32), which model::LoraAdapter and llama.cpp load.
//
// PEFT scales B A by lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora;
// llama.cpp's layout scales by adapter.lora.alpha / r, so the file's alpha is
// written as scale * r and both runtimes apply PEFT's scale. For llama-style
// bases (GGUF architecture "llama": Llama, Mistral) the rows of q_proj and
// k_proj's lora_B are permuted exactly as `slm convert` (llama.cpp) permuted
// the base's q/k rows, so the delta lands on the rows it was trained for.
// Supported: llama, mistral, qwen2 and qwen3 bases, the q/k/v/o and
// gate/up/down projections; mixture-of-experts bases (mixtral, qwen2moe,
// qwen3moe) the q/k/v/o projections and the experts' (Mixtral's
// block_sparse_moe.experts.N.w1/w3/w2, Qwen-MoE's mlp.experts.N.*_proj) as
// llama.cpp's 3-d expert pairs, zeros for experts the adapter leaves out.
// Refused by name: DoRA, the shared expert and routers, embeddings and lm_head,
// modules_to_save, LoRA biases, per-module rank/alpha patterns, any other
// module. The config and the tensors are untrusted: every field is type- and
// range-checked, every tensor's shape against the base matrix.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::convert {

// The modules slm can adapt, by their PEFT (Hugging Face) names.
const std::vector<std::string_view>& peft_module_names();  // q_proj ... down_proj

struct PeftConfig {
  int64_t r = 0;
  double lora_alpha = 8.0;  // PEFT's default
  bool use_rslora = false;
  // target_modules: a list of names (a module matches when its path equals
  // one or ends with "." + one), or one regular expression (PEFT's
  // re.fullmatch over the module path); "all-linear" is every module above.
  std::vector<std::string> target_list;
  std::string target_regex;
  bool target_is_regex = false;
  // The factor PEFT multiplies B A by.
  double scale() const;
};

// Parses adapter_config.json text; name is used in errors (slm::Error
// "NAME: ..."). Refuses what import cannot represent (see above).
PeftConfig parse_peft_config(std::string_view json, const std::string& name);
// Whether c targets the module at path ("model.layers.3.self_attn.q_proj").
bool peft_targets(const PeftConfig& c, std::string_view module_path);

struct LoraImportResult {
  std::string arch;     // general.architecture written
  int64_t n_pairs = 0;  // adapted matrices
  int64_t rank = 0;
  float alpha = 0;     // adapter.lora.alpha written (PEFT scale * rank)
  uint64_t bytes = 0;  // size of the written file
};

// Reads peft_dir against the base model at base_gguf and writes out_path
// atomically (no file is left behind on error). Throws slm::Error naming the
// file and the key or tensor.
LoraImportResult import_peft(const std::string& peft_dir, const std::string& base_gguf,
                             const std::string& out_path);

}  // namespace slm::convert
