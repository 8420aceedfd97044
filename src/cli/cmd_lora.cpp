// slm lora import: a Hugging Face PEFT LoRA folder to a GGUF adapter in
// llama.cpp's layout (see convert/peft.h), for --lora and `slm serve`.
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "convert/peft.h"

namespace slm::cli {
namespace {

Options lora_options() {
  Options o(
      "lora",
      "usage: slm lora import PEFT_DIR -o ADAPTER.gguf --model BASE.gguf\n"
      "  Converts a PEFT LoRA folder (adapter_config.json, adapter_model.safetensors) to a GGUF\n"
      "  adapter in llama.cpp's layout for --lora and `slm serve --lora NAME=F`. The scale\n"
      "  (lora_alpha / r, or / sqrt(r) with use_rslora) is kept; q/k rows are permuted as the\n"
      "  base's were for llama-style models. Bases: llama, mistral, qwen2, qwen3; modules q_proj,\n"
      "  k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. Mixture-of-experts bases "
      "(mixtral,\n"
      "  qwen2moe, qwen3moe): q/k/v/o and the experts (block_sparse_moe.experts.N.w1/w2/w3,\n"
      "  mlp.experts.N.gate_proj/up_proj/down_proj, as 3-d expert pairs). DoRA, shared experts,\n"
      "  routers, embeddings, lm_head and modules_to_save are refused. The output appears only "
      "when complete.\n");
  o.value("--out,-o", "ADAPTER.gguf", "the adapter to write (required)");
  add_model_option(o, "the base model the adapter was trained on, a GGUF file (required)");
  return o;
}

int run_lora(int argc, char** argv) {
  const Args args = lora_options().parse(argc, argv);
  std::vector<std::string> pos = args.positional();
  if (pos.empty()) throw UsageError("missing sub-command (import)");
  if (pos[0] != "import") throw UsageError("unknown sub-command '" + pos[0] + "'");
  pos.erase(pos.begin());
  if (pos.empty()) throw UsageError("the PEFT folder is required");
  if (pos.size() > 1) throw UsageError("unexpected argument '" + pos[1] + "'");
  const auto out = args.get("--out");
  if (!out) throw UsageError("-o ADAPTER.gguf is required");
  const auto base = args.get("--model");
  if (!base)
    throw UsageError("--model BASE.gguf is required (the model the adapter was trained on)");
  const convert::LoraImportResult r = convert::import_peft(pos[0], *base, *out);
  std::fprintf(stderr, "wrote %s: %s adapter, %lld matrices, rank %lld, alpha %g, %s\n",
               out->c_str(), r.arch.c_str(), static_cast<long long>(r.n_pairs),
               static_cast<long long>(r.rank), static_cast<double>(r.alpha),
               human_bytes(static_cast<double>(r.bytes)).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("lora", "LoRA adapters: import a PEFT folder to GGUF", lora_options, run_lora);

}  // namespace slm::cli
