// slm tokenize / slm detokenize: text <-> token ids with a model's vocabulary
// (GGUF) or a Hugging Face tokenizer.json.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

// The options both commands take to find the vocabulary.
void add_vocabulary_options(Options& o) {
  add_model_option(o, "a GGUF file whose vocabulary to use; also the first positional argument");
  o.value("--tokenizer-json", "F", "a Hugging Face tokenizer.json to use instead");
}

Options tokenize_options() {
  Options o("tokenize",
            "usage: slm tokenize ([--model] M.gguf | --tokenizer-json tokenizer.json) (TEXT | "
            "--text T | --file F)\n"
            "                    [--bos] [--no-special] [--ids]\n"
            "  Prints the token ids of the text, one \"ID 'piece'\" per line.\n");
  add_vocabulary_options(o);
  // No -t: that is --threads in every other command.
  o.value("--text", "T", "the text (or give it after the model)");
  o.value("--file,-f", "F", "read the text from F");
  o.flag("--bos", "put the vocabulary's BOS token first");
  o.flag("--no-special", "treat text that spells a control token as plain text");
  o.flag("--ids", "print only the ids, on one line");
  return o;
}

Options detokenize_options() {
  Options o("detokenize",
            "usage: slm detokenize ([--model] M.gguf | --tokenizer-json tokenizer.json) --ids \"ID "
            "ID ...\"\n"
            "  Prints the decoded text exactly, without a trailing newline.\n");
  add_vocabulary_options(o);
  o.value("--ids", "IDS", "the token ids, separated by spaces or commas (required)");
  return o;
}

// The vocabulary of --tokenizer-json, or else of the model (--model or the
// first positional argument).
tokenizer::Tokenizer load_tokenizer(const Args& args, size_t max_rest) {
  if (const auto json = args.get("--tokenizer-json")) {
    if (args.has("--model")) throw UsageError("give exactly one of --model or --tokenizer-json");
    if (args.positional().size() > max_rest)
      throw UsageError("unexpected argument '" + args.positional()[max_rest] + "'");
    return tokenizer::Tokenizer::from_hf_json(*json);
  }
  const auto model = model_argument(args, max_rest).spec;
  if (!model) throw UsageError("give exactly one of --model or --tokenizer-json");
  auto file = gguf::File::open(*model);
  return tokenizer::Tokenizer::from_gguf(*file);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int run_tokenize(int argc, char** argv) {
  const Args args = tokenize_options().parse(argc, argv);
  // With a model file given by --model, a positional argument is the text.
  const std::vector<std::string> rest =
      args.has("--tokenizer-json") ? args.positional() : model_argument(args, 1).rest;
  if (rest.size() > 1) throw UsageError("unexpected argument '" + rest[1] + "'");
  const int sources = args.has("--text") + args.has("--file") + !rest.empty();
  if (sources != 1) throw UsageError("give the text once: as an argument, --text or --file");
  const std::string text = args.has("--file")   ? read_all(*args.get("--file"))
                           : args.has("--text") ? *args.get("--text")
                                                : rest[0];
  const tokenizer::Tokenizer tok = load_tokenizer(args, 1);

  std::vector<int32_t> ids;
  if (args.flag("--bos")) {
    const auto bos = tok.bos();
    if (!bos) throw Error("--bos: the vocabulary has no BOS token");
    ids.push_back(*bos);
  }
  const auto body =
      tok.encode(text, /*add_special=*/false, /*parse_special=*/!args.flag("--no-special"));
  ids.insert(ids.end(), body.begin(), body.end());

  std::string out;
  if (args.flag("--ids")) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
  } else {
    for (int32_t id : ids) {
      out += std::to_string(id);
      out += " '";
      // Control characters would break the one-pair-per-line output.
      out += escape_controls(tok.token_to_piece(id));
      out += "'\n";
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ' || s[i] == ',' || s[i] == '\t' || s[i] == '\n' || s[i] == '[' || s[i] == ']') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != ',' && s[j] != '\t' && s[j] != '\n' &&
           s[j] != ']')
      ++j;
    const std::string word = s.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0' || errno == ERANGE || v < INT32_MIN || v > INT32_MAX) {
      throw Error("--ids: '" + word + "' is not a token id");
    }
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

int run_detokenize(int argc, char** argv) {
  const Args args = detokenize_options().parse(argc, argv);
  const auto ids_opt = args.get("--ids");
  if (!ids_opt) throw UsageError("--ids is required");
  const auto ids = parse_ids(*ids_opt);
  const tokenizer::Tokenizer tok = load_tokenizer(args, 0);
  const std::string text = tok.decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace

SLM_COMMAND("tokenize", "text to token ids (GGUF vocabulary or tokenizer.json)", tokenize_options,
            run_tokenize);
SLM_COMMAND("detokenize", "token ids to text", detokenize_options, run_detokenize);

}  // namespace slm::cli
