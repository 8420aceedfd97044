// slm logits: feed token ids exactly as given (no BOS) as one sequence and
// write the logits at every position.
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/args.h"
#include "cli/command.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/session.h"

namespace slm::cli {
namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  const char* p = text.c_str();
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') ++p;
    if (*p == '\0') break;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(p, &end, 10);
    if (end == p || errno == ERANGE || v < INT32_MIN || v > INT32_MAX)
      throw Error("--tokens: '" + std::string(p, std::min<size_t>(std::strlen(p), 20)) +
                  "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    p = end;
  }
  if (ids.empty()) throw Error("--tokens: the token list is empty");
  return ids;
}

Options logits_options() {
  Options o("logits",
            "usage: slm logits [--model] M --tokens \"ID ID ...\" [--out FILE] [-t N] [-c N]\n"
            "  Feeds the tokens as one sequence (no BOS added) and writes float32\n"
            "  [n_tokens][n_vocab] logits to FILE, or the top 5 per position to stdout.\n");
  add_model_option(o, "a GGUF file; also the first positional argument");
  o.value("--tokens", "IDS", "the token ids, separated by spaces (required)");
  o.value("--out,-o", "FILE", "write the logits here").def_note("the top 5 per position on stdout");
  o.value("--threads,-t", "N", "threads").integer(1, 1024).def("1");
  o.value("--ctx-size,-c", "N", "context size in tokens; 0: the model's training context")
      .integer(0, int64_t{1} << 24)
      .def("0");
  o.flag("--allow-long-context", "permit a context beyond the model's training length");
  add_kv_type_option(o, DType::F32);  // f32: this command is the reference
  add_lora_option(o);
  return o;
}

int run_logits(int argc, char** argv) {
  const Args args = logits_options().parse(argc, argv);
  const auto model_path = model_argument(args, 0).spec;
  if (!model_path) throw UsageError("no model given: slm logits M, or --model M");
  const auto tokens_text = args.get("--tokens");
  if (!tokens_text) throw UsageError("--tokens is required");
  const std::vector<int32_t> ids = parse_ids(*tokens_text);
  const int threads = static_cast<int>(args.get_int("--threads"));

  const auto model = model::Model::load(*model_path);
  model::SessionOptions so;
  so.n_ctx = args.get_int("--ctx-size");
  so.allow_beyond_train_ctx = args.flag("--allow-long-context");
  so.kv_type = kv_type_option(args);
  const int64_t n_ctx = so.n_ctx > 0 ? so.n_ctx : model->config().n_ctx_train;
  if (static_cast<int64_t>(ids.size()) > n_ctx)
    throw Error(std::to_string(ids.size()) + " tokens exceed the context of " +
                std::to_string(n_ctx) + " (raise it with -c)");
  model::Session session(*model, so);
  std::vector<model::LoraFile> loras;
  for (const std::string& a : args.get_all("--lora"))
    loras.push_back(model::parse_lora_argument(a));
  const auto adapter =
      loras.empty() ? nullptr : model::LoraAdapter::load(*model, loras, lora_type_option(args));
  session.set_adapter(adapter.get());
  ThreadPool pool(threads);
  std::vector<float> logits;
  session.feed(ids, pool, &logits);

  const int64_t n_vocab = model->config().n_vocab;
  if (const auto out = args.get("--out")) {
    std::FILE* f = std::fopen(out->c_str(), "wb");
    if (!f) throw Error(*out + ": cannot create file");
    const bool ok = std::fwrite(logits.data(), sizeof(float), logits.size(), f) == logits.size();
    if (std::fclose(f) != 0 || !ok) throw Error(*out + ": write failed");
    return 0;
  }
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* row = &logits[t * n_vocab];
    std::vector<int32_t> top;
    for (int k = 0; k < 5 && k < n_vocab; ++k) {
      int32_t best = -1;
      for (int32_t v = 0; v < n_vocab; ++v) {
        bool taken = false;
        for (int32_t u : top) taken |= u == v;
        if (!taken && (best < 0 || row[v] > row[best])) best = v;
      }
      top.push_back(best);
    }
    std::printf("pos %zu (token %d):", t, ids[t]);
    for (int32_t v : top) std::printf(" %d:%.4f", v, row[v]);
    std::printf("\n");
  }
  return 0;
}

}  // namespace

SLM_COMMAND("logits", "write the logits of a token sequence", logits_options, run_logits);

}  // namespace slm::cli
