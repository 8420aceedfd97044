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

int run_logits(int argc, char** argv) {
  const Args args(argc, argv, {"--model", "--tokens", "--out", "--threads", "--ctx-size", "--kv-type", "--lora"},
                  {"--help", "--allow-long-context"},
                  {{"-m", "--model"}, {"-t", "--threads"}, {"-o", "--out"}, {"-c", "--ctx-size"}});
  if (args.flag("--help")) {
    std::printf(
        "usage: slm logits --model M --tokens \"ID ID ...\" [--out FILE] [-t N] [-c N]\n"
        "  Feeds the tokens as one sequence (no BOS added) and writes float32\n"
        "  [n_tokens][n_vocab] logits to FILE, or the top 5 per position to stdout.\n"
        "  -c N: context size (default: the model's training context);\n"
        "  --allow-long-context: permit a context beyond the training length;\n"
        "  --kv-type f32|f16|q8_0: KV cache type (default f32: this command is the reference);\n"
        "  --lora F[:SCALE]: apply a LoRA adapter (repeatable).\n");
    return 0;
  }
  const auto model_path = args.get("--model");
  if (!model_path) throw UsageError("--model is required");
  const auto tokens_text = args.get("--tokens");
  if (!tokens_text) throw UsageError("--tokens is required");
  const std::vector<int32_t> ids = parse_ids(*tokens_text);
  const int threads = static_cast<int>(args.get_int("--threads", 1, 1, 1024));

  const auto model = model::Model::load(*model_path);
  model::SessionOptions so;
  so.n_ctx = args.get_int("--ctx-size", 0, 0, int64_t{1} << 24);
  so.allow_beyond_train_ctx = args.flag("--allow-long-context");
  so.kv_type = args.has("--kv-type") ? kv_type_option(args) : DType::F32;
  const int64_t n_ctx = so.n_ctx > 0 ? so.n_ctx : model->config().n_ctx_train;
  if (static_cast<int64_t>(ids.size()) > n_ctx)
    throw Error(std::to_string(ids.size()) + " tokens exceed the context of " + std::to_string(n_ctx) +
                " (raise it with -c)");
  model::Session session(*model, so);
  std::vector<model::LoraFile> loras;
  for (const std::string& a : args.get_all("--lora")) loras.push_back(model::parse_lora_argument(a));
  const auto adapter = loras.empty() ? nullptr : model::LoraAdapter::load(*model, loras);
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

SLM_COMMAND("logits", "write the logits of a token sequence", run_logits);

}  // namespace slm::cli
