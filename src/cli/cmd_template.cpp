// slm template: renders a chat template with a conversation and prints the
// prompt exactly (no newline added), for checking what a model will be fed.
// Rendering and the bos_token / eos_token text are engine/prompt.h's, as for
// run, chat and serve.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "base/error.h"
#include "chat/template.h"
#include "cli/args.h"
#include "cli/command.h"
#include "engine/prompt.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {
namespace {

using Json = nlohmann::ordered_json;

Options template_options() {
  Options o(
      "template",
      "usage: slm template ([--model] M | --template-file F) --messages FILE.json [--tools "
      "FILE.json]\n"
      "                    [--add-generation-prompt] [--bos-token S] [--eos-token S]\n"
      "  Renders the model's tokenizer.chat_template (or F) with the conversation in FILE.json\n"
      "  (an array of messages, or an object with \"messages\" and optionally \"tools\") and "
      "prints\n"
      "  the prompt.\n");
  add_model_option(
      o, "a GGUF file whose tokenizer.chat_template to render; also the first positional argument");
  o.value("--template-file", "F", "a Jinja chat template file to render instead");
  o.value("--messages", "FILE.json", "the conversation (required)");
  o.value("--tools", "FILE.json", "tool definitions passed to the template");
  o.flag("--add-generation-prompt", "end with the start of an assistant turn");
  o.value("--bos-token", "S", "the template's bos_token")
      .def_note("the model's BOS text, else empty");
  o.value("--eos-token", "S", "the template's eos_token")
      .def_note("the model's EOS text, else empty");
  return o;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json read_json(const std::string& path) {
  try {
    return Json::parse(read_text(path));
  } catch (const Json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// One line, whatever the message holds.
std::string one_line(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}

int run_template(int argc, char** argv) {
  const Args args = template_options().parse(argc, argv);
  const std::optional<std::string> model_path = model_argument(args, 0).spec;
  if (model_path.has_value() == args.has("--template-file"))
    throw UsageError("give exactly one of --model or --template-file");
  const std::optional<std::string> messages_path = args.get("--messages");
  if (!messages_path) throw UsageError("--messages FILE.json is required");

  chat::ChatInput input;
  std::string source;
  if (const auto& model = model_path) {
    const std::unique_ptr<gguf::File> file = gguf::File::open(*model);
    const std::optional<std::string_view> tmpl = file->get_string("tokenizer.chat_template");
    if (!tmpl) throw Error(*model + " has no tokenizer.chat_template; use --template-file");
    source = std::string(*tmpl);
    engine::set_special_token_text(input, tokenizer::Tokenizer::from_gguf(*file));
  } else {
    source = read_text(*args.get("--template-file"));
  }
  input.bos_token = args.get("--bos-token").value_or(input.bos_token);
  input.eos_token = args.get("--eos-token").value_or(input.eos_token);
  input.add_generation_prompt = args.flag("--add-generation-prompt");

  const Json conversation = read_json(*messages_path);
  if (conversation.is_array()) {
    input.messages = conversation;
  } else if (conversation.is_object() && conversation.contains("messages")) {
    input.messages = conversation["messages"];
    if (conversation.contains("tools")) input.tools = conversation["tools"];
  } else {
    throw Error(*messages_path + ": expected an array of messages or an object with \"messages\"");
  }
  if (const auto tools_path = args.get("--tools")) {
    const Json tools = read_json(*tools_path);
    input.tools = tools.is_object() && tools.contains("tools") ? tools["tools"] : tools;
  }

  std::string prompt;
  try {
    prompt = engine::render_chat_prompt(chat::Template(source), input);
  } catch (const Error& e) {
    std::fprintf(stderr, "slm template: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  return 0;
}

}  // namespace

SLM_COMMAND("template", "render a chat template with a conversation", template_options,
            run_template);

}  // namespace slm::cli
