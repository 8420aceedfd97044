// slm convert: a Hugging Face model folder to GGUF (see convert/convert.h).
#include <cctype>
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

Options convert_options() {
  Options o("convert",
            "usage: slm convert HF_DIR -o MODEL.gguf [--type F32|F16|BF16|Q8_0] [--name NAME]\n"
            "  Converts a Hugging Face folder (config.json, model.safetensors or sharded\n"
            "  model-*.safetensors with model.safetensors.index.json, tokenizer.json,\n"
            "  tokenizer_config.json, generation_config.json) to GGUF, as llama.cpp's\n"
            "  convert_hf_to_gguf.py lays it out.\n",
            "architectures: " + convert::hf_architecture_names() + ".");
  o.value("--out,-o", "MODEL.gguf", "the GGUF file to write (required)");
  o.value("--type", "TYPE",
          "the matrices' type: F32, F16, BF16 or Q8_0 (norms and biases stay F32)")
      .choices({"F32", "F16", "BF16", "Q8_0"})
      .def("F16");
  o.value("--name", "NAME", "general.name").def_note("the folder's name");
  return o;
}

int run_convert(int argc, char** argv) {
  const Args args = convert_options().parse(argc, argv);
  const auto& pos = args.positional();
  if (pos.empty()) throw UsageError("the Hugging Face folder is required");
  if (pos.size() > 1) throw UsageError("unexpected argument '" + pos[1] + "'");
  const auto out = args.get("--out");
  if (!out) throw UsageError("-o MODEL.gguf is required");
  convert::ConvertOptions options;
  std::string type = args.choice("--type");
  for (char& ch : type) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const auto t = dtype_from_name(type);
  if (!t) throw UsageError(args.shown("--type") + ": '" + type + "' is not a type");
  options.type = *t;
  options.name = args.get("--name").value_or("");
  const convert::ConvertResult r = convert::convert_hf(pos[0], *out, options);
  std::fprintf(stderr, "wrote %s: %s, %lld tensors, %s, %s\n", out->c_str(), r.arch.c_str(),
               static_cast<long long>(r.n_tensors), type.c_str(),
               human_bytes(static_cast<double>(r.bytes)).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("convert", "convert a Hugging Face model folder to GGUF", convert_options, run_convert);

}  // namespace slm::cli
