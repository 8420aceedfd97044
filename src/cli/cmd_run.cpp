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
#include "engine/prompt.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

const char* kRunHelp =
    "usage: slm run [--model] M (-p PROMPT | PROMPT | --file F | < stdin) [options]\n"
    "  -n, --n-predict N      tokens to generate (default: until end of text or a full context)\n"
    "  -c, --ctx-size N       context size (default: the model's training context)\n"
    "  -t, --threads N        threads (default: all cores)\n"
    "  --seed S --temp T --top-k K --top-p P --min-p P\n"
    "  --repeat-penalty R --repeat-last-n N --presence-penalty P --frequency-penalty F\n"
    "  --logit-bias ID=BIAS   (repeatable; BIAS may be -inf)\n"
    "  --stop S               stop string (repeatable; never printed)\n"
    "  --grammar F.gbnf       constrain the output to a GBNF grammar\n"
    "  --json-schema F.json   constrain the output to JSON valid under a JSON Schema\n"
    "  --json-object          constrain the output to one JSON object\n"
    "  --context-shift        when the context fills, drop old tokens and continue (--keep N keeps the first N)\n"
    "  --allow-long-context   permit a context beyond the model's training length\n"
    "  --kv-type T            KV cache type: f16 (default), f32 or q8_0 (half the memory of f16)\n"
    "  --lora F[:SCALE]       apply a LoRA adapter (llama.cpp GGUF layout; repeatable)\n"
    "  --draft ngram          speculative decoding from the text's own n-grams (default none);\n"
    "                         --draft-max N drafts at most N tokens a step (default 8)\n"
    "  --no-bos               do not add BOS even where the model asks for it\n"
    "  --json                 print one JSON object (text, tokens, finish reason, usage, timings)\n"
    "  -h, --help             this text\n"
    "M is a GGUF file or a store name (slm list); without one: $SLM_MODEL, then the store's default.\n"
    "With no prompt and a terminal on stdin, starts `slm chat` with the same options.\n";

// The prompt from -p, a positional argument after the model, --file or a
// pipe on stdin: exactly one of them.
std::string read_prompt(const Args& args) {
  const std::vector<std::string> rest = model_argument(args, 1).rest;
  std::vector<std::string> given;
  if (args.has("--prompt")) given.push_back(args.shown("--prompt"));
  if (args.has("--file")) given.push_back(args.shown("--file"));
  if (!rest.empty()) given.push_back("a prompt argument ('" + rest[0].substr(0, 40) + "')");
  if (given.size() > 1)
    throw UsageError("give the prompt once: " + given[0] + " and " + given[1] + " cannot be used together");
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
  std::set<std::string> values = kGenerateValueOptions;
  values.insert({"--prompt", "--file"});
  std::set<std::string> flags = kGenerateFlagOptions;
  flags.insert({"--json", "--no-bos"});
  std::map<std::string, std::string> aliases = kGenerateAliases;
  aliases["-p"] = "--prompt";
  aliases["-f"] = "--file";
  const Args args(argc, argv, values, flags, aliases);
  if (args.flag("--help")) {
    std::fputs(kRunHelp, stdout);
    return 0;
  }
  // No prompt at all on a terminal: an interactive chat, as `ollama run`
  // does (`-p ""` still generates from BOS alone).
  if (!args.has("--prompt") && !args.has("--file") && model_argument(args, 1).rest.empty() &&
      isatty(STDIN_FILENO)) {
    for (const Command& c : command_registry())
      if (c.name == "chat") return c.run(argc, argv);
  }
  const std::string prompt_text = read_prompt(args);
  const auto model = load_model(args);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model->file());
  engine::GenerateOptions opts = generate_options(args, model->config().n_vocab);
  opts.adapter = lora_option(args, *model);

  std::vector<int32_t> prompt =
      engine::tokenize_prompt(tok, prompt_text, {.allow_bos = !args.flag("--no-bos")});
  if (prompt.empty() && tok.bos()) prompt.push_back(*tok.bos());
  if (prompt.empty()) throw Error("the prompt is empty and the model has no BOS token to start from");
  opts.strip_leading_space = prompt_text.empty();

  ThreadPool pool(thread_count(args));
  engine::Generator gen(*model, tok, pool, session_options(args), draft_option(args));
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
    j["timings"] = {{"prompt_ms", r.prompt_ms}, {"generation_ms", r.gen_ms}, {"ttft_ms", r.ttft_ms},
                    {"peak_rss_bytes", peak_rss_bytes()}};
    if (r.n_drafted > 0) j["speculative"] = {{"drafted", r.n_drafted}, {"accepted", r.n_accepted}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  std::fprintf(stderr, "%s\n", timing_line(r).c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("run", "generate text from a prompt", run);

}  // namespace slm::cli
