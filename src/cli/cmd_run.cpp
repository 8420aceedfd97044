// slm run: generate a continuation of a prompt, streaming it to stdout.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/prune_args.h"
#include "engine/prompt.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

Options run_options() {
  Options o("run",
            "usage: slm run [--model] M (-p PROMPT | PROMPT | --file F | < stdin) [options]\n"
            "  Generates a continuation of the prompt, streaming it to stdout.\n",
            "M is a GGUF file or a store name (slm list); without one: $SLM_MODEL, then the "
            "store's default.\n"
            "With no prompt and a terminal on stdin, starts `slm chat` with the same options.");
  o.value("--prompt,-p", "PROMPT",
          "the prompt (or give it after the model, or by --file, or on stdin)");
  o.value("--file,-f", "F", "read the prompt from F");
  add_generate_options(o);
  o.flag("--no-bos", "do not add BOS even where the model asks for it");
  o.flag("--json", "print one JSON object (text, tokens, finish reason, usage, timings)");
  return o;
}

// The prompt from -p, a positional argument after the model, --file or a
// pipe on stdin: exactly one of them.
std::string read_prompt(const Args& args) {
  const std::vector<std::string> rest = model_argument(args, 1).rest;
  std::vector<std::string> given;
  if (args.has("--prompt")) given.push_back(args.shown("--prompt"));
  if (args.has("--file")) given.push_back(args.shown("--file"));
  if (!rest.empty()) given.push_back("a prompt argument ('" + rest[0].substr(0, 40) + "')");
  if (given.size() > 1)
    throw UsageError("give the prompt once: " + given[0] + " and " + given[1] +
                     " cannot be used together");
  if (const auto p = args.get("--prompt")) return *p;
  if (!rest.empty()) return rest[0];
  if (const auto f = args.get("--file")) {
    std::ifstream in(*f, std::ios::binary);
    if (!in) throw Error(*f + ": cannot open prompt file");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  if (!isatty(STDIN_FILENO)) return std::string(std::istreambuf_iterator<char>(std::cin), {});
  return "";
}

int run(int argc, char** argv) {
  const Args args = run_options().parse(argc, argv);
  // No prompt at all on a terminal: an interactive chat, as `ollama run`
  // does (`-p ""` still generates from BOS alone).
  if (!args.has("--prompt") && !args.has("--file") && model_argument(args, 1).rest.empty() &&
      isatty(STDIN_FILENO)) {
    for (const Command& c : command_registry())
      if (c.name == "chat") return c.run(argc, argv);
  }
  const std::string prompt_text = read_prompt(args);
  const auto model = load_model(args);
  apply_prune_options(args, *model);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model->file());
  engine::GenerateOptions opts = generate_options(args, model->config().n_vocab);
  opts.adapter = lora_option(args, *model);

  std::vector<int32_t> prompt =
      engine::tokenize_prompt(tok, prompt_text, {.allow_bos = !args.flag("--no-bos")});
  if (prompt.empty() && tok.bos()) prompt.push_back(*tok.bos());
  if (prompt.empty())
    throw Error("the prompt is empty and the model has no BOS token to start from");
  opts.strip_leading_space = prompt_text.empty();

  ThreadPool pool(thread_count(args));
  const int draft_max = draft_option(args);
  const auto draft_model = load_draft_model(args);
  engine::Generator gen(*model, tok, pool, session_options(args), draft_max, draft_model.get());
  const bool json = args.flag("--json");
  bool at_line_start = true;
  const engine::GenerateResult r = generate(gen, prompt, opts, [&](std::string_view text) {
    if (json || text.empty()) return;
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    at_line_start = text.back() == '\n';
  });
  // The output ends with a newline, so a shell prompt or the next line of a
  // log never runs on from the generated text.
  if (!json && !at_line_start) std::fputs("\n", stdout);
  std::fflush(stdout);
  if (r.finish == engine::FinishReason::kContextFull)
    std::fprintf(stderr,
                 "slm run: the context of %lld tokens is full; generation stopped "
                 "(raise --ctx-size, or pass --context-shift to drop old tokens)\n",
                 (long long)gen.n_ctx());
  if (json) {
    nlohmann::json j;
    j["text"] = r.text;
    j["tokens"] = r.tokens;
    j["finish_reason"] = engine::finish_reason_name(r.finish);
    j["usage"] = {{"prompt_tokens", r.n_prompt},
                  {"completion_tokens", r.tokens.size()},
                  {"total_tokens", r.n_prompt + static_cast<int64_t>(r.tokens.size())}};
    j["timings"] = {{"prompt_ms", r.prompt_ms},
                    {"generation_ms", r.gen_ms},
                    {"ttft_ms", r.ttft_ms},
                    {"peak_rss_bytes", peak_rss_bytes()}};
    if (r.n_drafted > 0) j["speculative"] = {{"drafted", r.n_drafted}, {"accepted", r.n_accepted}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  std::fprintf(stderr, "%s\n", timing_line(r).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("run", "generate text from a prompt", run_options, run);

}  // namespace slm::cli
