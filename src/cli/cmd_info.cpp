// slm info: what a model file holds and what it will cost to run.
#include <cstdio>
#include <string>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::cli {
namespace {

std::string human_bytes(double b) {
  return slm::human_bytes(b, 2);
}

std::string shape_of(const gguf::TensorInfo& t) {
  std::string s = "[";
  for (int d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "]";
}

// One metadata value, shortened: arrays show their length and first items.
std::string summarize(const gguf::Value& v) {
  using gguf::ValueType;
  switch (v.type) {
    case ValueType::STRING: {
      std::string s(v.str.substr(0, 60));
      for (char& ch : s)
        if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
      return "\"" + s +
             (v.str.size() > 60 ? "...\" (" + std::to_string(v.str.size()) + " bytes)" : "\"");
    }
    case ValueType::BOOL:
      return v.u ? "true" : "false";
    case ValueType::F32:
    case ValueType::F64: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", v.f);
      return buf;
    }
    case ValueType::ARRAY: {
      std::string s = "array[" + std::to_string(v.count) + "] of " +
                      std::string(gguf::value_type_name(v.elem_type));
      return s;
    }
    default:
      if (v.type == ValueType::I8 || v.type == ValueType::I16 || v.type == ValueType::I32 ||
          v.type == ValueType::I64)
        return std::to_string(v.i);
      return std::to_string(v.u);
  }
}

Options info_options() {
  Options o("info",
            "usage: slm info [--model] M [-c N] [--kv-type f16|f32|q8_0] [--no-tensors]\n"
            "  Architecture, parameter count, sizes, metadata and tensor table, and the\n"
            "  memory a context of -c tokens needs with a KV cache of --kv-type.\n");
  add_model_option(o, "a GGUF file; also the first positional argument");
  o.value("--ctx-size,-c", "N", "context size for the memory estimate")
      .integer(1, int64_t{1} << 24)
      .def_note("the model's training context");
  add_kv_type_option(o);
  o.flag("--tensors", "list the tensors (the default)");
  o.flag("--no-tensors", "leave out the tensor table");
  return o;
}

int run_info(int argc, char** argv) {
  const Args args = info_options().parse(argc, argv);
  const auto spec = model_argument(args, 0).spec;
  if (!spec) throw UsageError("no model given: slm info M, or --model M");
  const std::string path = *spec;
  const auto model = model::Model::load(path);
  const model::ModelConfig& c = model->config();
  const gguf::File& f = model->file();
  const int64_t n_ctx = args.has("--ctx-size") ? args.get_int("--ctx-size") : c.n_ctx_train;

  uint64_t weight_bytes = 0;
  for (const gguf::TensorInfo& t : f.tensors()) weight_bytes += t.n_bytes;
  const DType kv_type = kv_type_option(args);
  const double kv_bytes = static_cast<double>(
      model::Session::cache_bytes(c, n_ctx, model::SessionOptions{}.n_batch, kv_type));

  std::printf("file:          %s (GGUF v%u, %s)\n", path.c_str(), f.version(),
              human_bytes(static_cast<double>(f.file_size())).c_str());
  std::printf("architecture:  %s\n", c.arch_name.c_str());
  if (const auto name = f.get_string("general.name"))
    std::printf("name:          %.*s\n", (int)name->size(), name->data());
  std::printf("parameters:    %.3f M\n", static_cast<double>(model->n_params()) / 1e6);
  std::printf("layers:        %lld, n_embd %lld, heads %lld (kv %lld), head_dim %lld\n",
              (long long)c.n_layer, (long long)c.n_embd, (long long)c.n_head,
              (long long)c.n_head_kv, (long long)c.head_dim);
  if (c.is_moe())
    std::printf("experts:       %lld, %lld used per token, expert ff %lld\n", (long long)c.n_expert,
                (long long)c.n_expert_used, (long long)c.n_ff_expert);
  else
    std::printf("feed-forward:  %lld\n", (long long)c.n_ff);
  const model::LayerWeights& l0 = model->weights().layers.front();
  std::printf("block:         %s attention%s%s, %s feed-forward\n",
              std::string(c.family->name).c_str(), l0.has_qkv_bias() ? ", q/k/v biases" : "",
              l0.has_qk_norm() ? ", per-head q/k norm" : "",
              c.is_moe() ? "mixture-of-experts" : "dense SwiGLU");
  std::printf("vocabulary:    %lld\n", (long long)c.n_vocab);
  std::printf("context:       %lld (trained)\n", (long long)c.n_ctx_train);
  std::printf("rope:          base %g, %lld dims, %s\n", c.rope_base, (long long)c.n_rot,
              c.rope_order == model::RopeOrder::kNeox ? "neox" : "normal");
  std::printf("weights:       %s (mapped from the file, not copied)\n",
              human_bytes(static_cast<double>(weight_bytes)).c_str());
  std::printf("memory @ %lld ctx: %s weights + %s KV cache (%s) = %s\n", (long long)n_ctx,
              human_bytes(static_cast<double>(weight_bytes)).c_str(), human_bytes(kv_bytes).c_str(),
              std::string(dtype_name(kv_type)).c_str(),
              human_bytes(static_cast<double>(weight_bytes) + kv_bytes).c_str());

  std::printf("\nmetadata (%zu keys):\n", f.metadata().size());
  for (const gguf::KeyValue& kv : f.metadata())
    std::printf("  %-45.*s %s\n", (int)kv.key.size(), kv.key.data(), summarize(kv.value).c_str());

  if (!args.flag("--no-tensors")) {
    std::printf("\ntensors (%zu):\n", f.tensors().size());
    // The role column comes from the family's tensor table (model/arch.h);
    // "unused" marks a tensor slm does not read.
    for (const gguf::TensorInfo& t : f.tensors()) {
      const model::TensorSpec* spec = model::find_spec(*c.family, t.name);
      std::printf("  %-40.*s %-7s %-22s %-10s %s\n", (int)t.name.size(), t.name.data(),
                  std::string(dtype_name(t.type)).c_str(), shape_of(t).c_str(),
                  human_bytes(static_cast<double>(t.n_bytes)).c_str(),
                  spec ? model::spec_label(*spec).c_str() : "unused");
    }
  }
  return 0;
}

}  // namespace

SLM_COMMAND("info", "describe a model file", info_options, run_info);

}  // namespace slm::cli
