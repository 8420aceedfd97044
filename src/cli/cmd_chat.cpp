// slm chat: a terminal chat using the model's chat template. The whole
// conversation is re-rendered each turn, and the generator feeds only the
// tokens past what its KV cache already holds, so earlier turns are not
// processed again.
#include <editline/readline.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/format.h"
#include "base/thread_pool.h"
#include "chat/template.h"
#include "cli/command.h"
#include "cli/common.h"
#include "cli/prune_args.h"
#include "engine/prompt.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_generating{false};

extern "C" void on_sigint(int) {
  g_interrupted.store(true);
  if (!g_generating.load()) {
    const char msg[] = "\n(type /exit or press Ctrl-D to leave)\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
  }
}

// What can be typed at the prompt (/help, and slm chat --help).
const char* kChatCommands =
    "  /reset        forget the conversation (keeps the system prompt)\n"
    "  /save FILE    save the conversation as JSON\n"
    "  /load FILE    load a conversation saved with /save\n"
    "  /help         this text\n"
    "  /exit         leave (or Ctrl-D); Ctrl-C stops the current answer\n";

Options chat_options() {
  Options o("chat",
            "usage: slm chat [[--model] M] [options]\n"
            "  A terminal chat using the model's chat template.\n",
            std::string("commands at the chat prompt:\n") + kChatCommands);
  add_generate_options(o);
  o.value("--system", "S", "system prompt");
  o.value("--template-file", "F", "a Jinja chat template to use instead of the model's");
  o.flag("--verbose-prompt", "print each rendered prompt to stderr");
  o.flag("--no-stats", "do not print per-turn speed");
  return o;
}

class ChatSession {
 public:
  ChatSession(const model::Model& model, const tokenizer::Tokenizer& tok, chat::Template tmpl,
              ThreadPool& pool, const model::SessionOptions& so, engine::GenerateOptions opts,
              std::string system, bool verbose_prompt, bool stats, int draft,
              const model::Model* draft_model)
      : model_(model),
        tok_(tok),
        tmpl_(std::move(tmpl)),
        gen_(model, tok, pool, so, draft, draft_model),
        opts_(std::move(opts)),
        system_(std::move(system)),
        verbose_prompt_(verbose_prompt),
        stats_(stats) {
    reset();
  }

  void reset() {
    messages_ = nlohmann::ordered_json::array();
    if (!system_.empty()) messages_.push_back({{"role", "system"}, {"content", system_}});
    gen_.reset();
  }

  void save(const std::string& path) const {
    std::ofstream out(path, std::ios::binary);
    if (!out) throw Error(path + ": cannot write");
    out << messages_.dump(2) << "\n";
  }

  void load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_array())
      throw Error(path + ": not a conversation saved by /save (a JSON array)");
    chat::ChatInput probe;
    probe.messages = j;
    chat::make_chat_context(probe);  // validates roles and fields
    messages_ = std::move(j);
  }

  size_t turns() const { return messages_.size(); }
  int64_t n_ctx() const { return gen_.n_ctx(); }

  // Tokens kept free for the answer when old turns must go: -n when given,
  // else a quarter of the context, never more than half of it.
  int64_t answer_room() const {
    const int64_t n_ctx = gen_.n_ctx();
    const int64_t want = opts_.n_predict > 0 ? opts_.n_predict : n_ctx / 4;
    return std::clamp<int64_t>(want, 1, n_ctx / 2);
  }

  // The prompt of the conversation with its oldest turns (a user message and
  // the answers and tool results after it; a system prompt always stays)
  // dropped until it leaves answer_room() free. Says so once per chat.
  engine::Prompt fitted_prompt() {
    size_t dropped = 0;
    while (true) {
      chat::ChatInput in;
      in.messages = messages_;
      in.add_generation_prompt = true;
      engine::Prompt built = engine::build_chat_prompt(tok_, tmpl_, std::move(in));
      const size_t first = !messages_.empty() && messages_[0]["role"] == "system" ? 1 : 0;
      const int64_t n = static_cast<int64_t>(built.tokens.size());
      // The newest user message always stays; past it nothing can go.
      if (n + answer_room() <= gen_.n_ctx() || messages_.size() <= first + 1) {
        if (dropped > 0 && !told_dropping_) {
          std::fprintf(
              stderr,
              "[the conversation outgrew the context of %lld tokens: dropped the %zu oldest "
              "messages (the model no longer sees them; /save keeps only what remains)]\n",
              (long long)gen_.n_ctx(), dropped);
          told_dropping_ = true;
        }
        return built;
      }
      // One turn: the message at `first` and what follows it up to the next user message.
      size_t end = first + 1;
      while (end < messages_.size() - 1 && messages_[end]["role"] != "user") ++end;
      messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(first),
                      messages_.begin() + static_cast<std::ptrdiff_t>(end));
      dropped += end - first;
    }
  }

  void answer(const std::string& user_text) {
    messages_.push_back({{"role", "user"}, {"content", user_text}});
    engine::Prompt built;
    try {
      built = fitted_prompt();
    } catch (...) {
      messages_.erase(messages_.size() - 1);
      throw;
    }
    if (verbose_prompt_) std::fprintf(stderr, "[prompt]\n%s[/prompt]\n", built.text.c_str());
    const std::vector<int32_t>& prompt = built.tokens;
    g_interrupted.store(false);
    g_generating.store(true);
    engine::GenerateResult r;
    try {
      r = generate(
          gen_, prompt, opts_,
          [](std::string_view t) {
            std::fwrite(t.data(), 1, t.size(), stdout);
            std::fflush(stdout);
          },
          &g_interrupted);
    } catch (...) {
      g_generating.store(false);
      messages_.erase(messages_.size() - 1);
      throw;
    }
    g_generating.store(false);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    messages_.push_back({{"role", "assistant"}, {"content", r.text}});
    if (r.finish == engine::FinishReason::kCancelled) std::fprintf(stderr, "[stopped]\n");
    if (r.finish == engine::FinishReason::kContextFull)
      std::fprintf(stderr,
                   "[the context of %lld tokens is full: the next message drops the oldest turns; "
                   "/reset starts over, --ctx-size makes room]\n",
                   (long long)gen_.n_ctx());
    if (stats_) std::fprintf(stderr, "[%s]\n", timing_line(r).c_str());
  }

 private:
  const model::Model& model_;
  const tokenizer::Tokenizer& tok_;
  chat::Template tmpl_;
  engine::Generator gen_;
  engine::GenerateOptions opts_;
  std::string system_;
  bool verbose_prompt_;
  bool stats_;
  nlohmann::ordered_json messages_;
  bool told_dropping_ = false;
};

// One line of input; nullopt at end of input (Ctrl-D). Ctrl-C at the prompt
// throws the line away and asks again: editline installs its own SIGINT
// handler without SA_RESTART while it reads (and re-raises the signal to
// ours), so an interrupted read comes back as a null line, exactly like end
// of input; g_interrupted tells the two apart.
std::optional<std::string> read_line(bool interactive) {
  while (true) {
    g_interrupted.store(false);
    if (interactive) {
      char* line = readline("> ");
      if (line == nullptr) {
        if (g_interrupted.load()) continue;
        return std::nullopt;
      }
      std::string s(line);
      std::free(line);
      if (!s.empty()) add_history(s.c_str());
      return s;
    }
    std::string s;
    if (std::getline(std::cin, s)) return s;
    // A read from a terminal interrupted by Ctrl-C is an error, not the end.
    if (!g_interrupted.load() || std::feof(stdin)) return std::nullopt;
    std::cin.clear();
    std::clearerr(stdin);
  }
}

int run_chat(int argc, char** argv) {
  const Args args = chat_options().parse(argc, argv);
  model_argument(args, 0);  // the model is the only positional argument
  const auto model = load_model(args);
  apply_prune_options(args, *model);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(model->file());
  std::string source;
  if (const auto f = args.get("--template-file")) {
    std::ifstream in(*f, std::ios::binary);
    if (!in) throw Error(*f + ": cannot open template file");
    source.assign(std::istreambuf_iterator<char>(in), {});
  } else if (const auto t = model->file().get_string("tokenizer.chat_template")) {
    source = std::string(*t);
  } else {
    throw Error(
        model->file().name() +
        ": the model has no chat template (tokenizer.chat_template); pass --template-file F");
  }
  engine::GenerateOptions opts = generate_options(args, model->config().n_vocab);
  opts.adapter = lora_option(args, *model);
  ThreadPool pool(thread_count(args));
  const int draft_max = draft_option(args);
  const auto draft_model = load_draft_model(args);
  ChatSession chat(*model, tok, chat::Template(source), pool, session_options(args), opts,
                   args.get("--system").value_or(""), args.flag("--verbose-prompt"),
                   !args.flag("--no-stats"), draft_max, draft_model.get());

  const bool interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  if (interactive) {
    // What is talking, how much it remembers, and whose template shapes the prompt.
    const auto name = model->file().get_string("general.name");
    std::fprintf(
        stderr, "slm chat: %s (%s, %s parameters) | context %lld tokens | template: %s%s\n",
        name ? std::string(*name).c_str() : model->file().name().c_str(),
        model->config().arch_name.c_str(),
        human_count(static_cast<double>(model->n_params())).c_str(), (long long)chat.n_ctx(),
        args.get("--template-file") ? ("--template-file " + *args.get("--template-file")).c_str()
                                    : "the model file's",
        opts.adapter ? (" | LoRA: " + opts.adapter->label()).c_str() : "");
    std::fprintf(stderr, "type a message, /help for commands, Ctrl-D to leave\n");
  }

  while (const auto line = read_line(interactive)) {
    const std::string& s = *line;
    if (s.empty()) continue;
    try {
      if (s == "/exit" || s == "/quit") break;
      if (s == "/help") {
        std::fputs("commands:\n", stdout);
        std::fputs(kChatCommands, stdout);
      } else if (s == "/reset") {
        chat.reset();
        std::fprintf(stderr, "[conversation reset]\n");
      } else if (s.rfind("/save ", 0) == 0) {
        chat.save(s.substr(6));
        std::fprintf(stderr, "[saved %zu messages to %s]\n", chat.turns(), s.substr(6).c_str());
      } else if (s.rfind("/load ", 0) == 0) {
        chat.load(s.substr(6));
        std::fprintf(stderr, "[loaded %zu messages from %s]\n", chat.turns(), s.substr(6).c_str());
      } else if (s[0] == '/' && s.find(' ') == std::string::npos && s.size() < 16) {
        std::fprintf(stderr, "unknown command %s (/help lists them)\n", s.c_str());
      } else {
        chat.answer(s);
      }
    } catch (const Error& e) {
      // A failed turn is reported and the chat goes on; the conversation is unchanged.
      std::fprintf(stderr, "error: %s\n", e.what());
    }
  }
  return 0;
}

}  // namespace

SLM_COMMAND("chat", "chat with a model in the terminal", chat_options, run_chat);

}  // namespace slm::cli
