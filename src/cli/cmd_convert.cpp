// slm convert: a Hugging Face model folder to GGUF (see convert/convert.h).
#include <cstdio>
#include <string>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "convert/convert.h"
#include "convert/hf_config.h"

namespace slm::cli {
namespace {

int run_convert(int argc, char** argv) {
  const Args args(argc, argv, {"--out", "--type", "--name"}, {"--help"}, {{"-o", "--out"}});
  if (args.flag("--help")) {
    std::printf(
        "usage: slm convert HF_DIR -o MODEL.gguf [--type F32|F16|BF16|Q8_0] [--name NAME]\n"
        "  Converts a Hugging Face folder (config.json, model.safetensors or sharded\n"
        "  model-*.safetensors with model.safetensors.index.json, tokenizer.json,\n"
        "  tokenizer_config.json, generation_config.json) to GGUF, as llama.cpp's\n"
        "  convert_hf_to_gguf.py lays it out. --type: matrices' type (default F16;\n"
        "  norms and biases stay F32). --name: general.name (default: the folder's).\n"
        "  Architectures: %s.\n",
        convert::hf_architecture_names().c_str());
    return 0;
  }
  const auto& pos = args.positional();
  if (pos.empty()) throw UsageError("the Hugging Face folder is required");
  if (pos.size() > 1) throw UsageError("unexpected argument '" + pos[1] + "'");
  const auto out = args.get("--out");
  if (!out) throw UsageError("-o MODEL.gguf is required");
  convert::ConvertOptions options;
  const std::string type = args.get_or("--type", "F16");
  const auto t = dtype_from_name(type);
  if (!t || (*t != DType::F32 && *t != DType::F16 && *t != DType::BF16 && *t != DType::Q8_0))
    throw UsageError(args.shown("--type") + ": '" + type + "' is not one of F32, F16, BF16, Q8_0");
  options.type = *t;
  options.name = args.get_or("--name", "");
  const convert::ConvertResult r = convert::convert_hf(pos[0], *out, options);
  std::fprintf(stderr, "wrote %s: %s, %lld tensors, %s, %s\n", out->c_str(), r.arch.c_str(),
               static_cast<long long>(r.n_tensors), type.c_str(),
               human_bytes(static_cast<double>(r.bytes)).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("convert", "convert a Hugging Face model folder to GGUF", run_convert);

}  // namespace slm::cli
