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

constexpr const char* kTokenizeUsage =
    "usage: slm tokenize (--model M.gguf | --tokenizer-json tokenizer.json) (--text T | --file F)\n"
    "                    [--bos] [--no-special] [--ids]\n"
    "  --bos         put the vocabulary's BOS token first\n"
    "  --no-special  treat text that spells a control token as plain text\n"
    "  --ids         print only the ids, on one line\n";
constexpr const char* kDetokenizeUsage =
    "usage: slm detokenize (--model M.gguf | --tokenizer-json tokenizer.json) --ids \"ID ID ...\"\n"
    "  prints the decoded text exactly, without a trailing newline\n";

tokenizer::Tokenizer load_tokenizer(const Args& args) {
  const auto model = args.get("--model");
  const auto json = args.get("--tokenizer-json");
  if (model.has_value() == json.has_value())
    throw UsageError("give exactly one of --model or --tokenizer-json");
  if (json) return tokenizer::Tokenizer::from_hf_json(*json);
  auto file = gguf::File::open(*model);
  return tokenizer::Tokenizer::from_gguf(*file);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int run_tokenize(int argc, char** argv) {
  const Args args(argc, argv, {"--model", "--tokenizer-json", "--text", "--file"},
                  {"--bos", "--no-special", "--ids", "--help"},
                  {{"-m", "--model"}, {"-t", "--text"}, {"-f", "--file"}});
  if (args.flag("--help")) {
    std::fputs(kTokenizeUsage, stdout);
    return 0;
  }
  const auto text_opt = args.get("--text");
  const auto file_opt = args.get("--file");
  if (text_opt.has_value() == file_opt.has_value())
    throw UsageError("give exactly one of --text or --file");
  const std::string text = text_opt ? *text_opt : read_all(*file_opt);
  const tokenizer::Tokenizer tok = load_tokenizer(args);

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
  const Args args(argc, argv, {"--model", "--tokenizer-json", "--ids"}, {"--help"},
                  {{"-m", "--model"}});
  if (args.flag("--help")) {
    std::fputs(kDetokenizeUsage, stdout);
    return 0;
  }
  const auto ids_opt = args.get("--ids");
  if (!ids_opt) throw UsageError("--ids is required");
  const auto ids = parse_ids(*ids_opt);
  const tokenizer::Tokenizer tok = load_tokenizer(args);
  const std::string text = tok.decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace

SLM_COMMAND("tokenize", "text to token ids (GGUF vocabulary or tokenizer.json)", run_tokenize);
SLM_COMMAND("detokenize", "token ids to text", run_detokenize);

}  // namespace slm::cli
