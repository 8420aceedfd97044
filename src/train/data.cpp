// data.h: JSONL examples to token ids and loss masks.
#include "train/data.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "chat/template.h"
#include "engine/prompt.h"
#include "tokenizer/tokenizer.h"

namespace slm::train {

namespace {

using Json = nlohmann::ordered_json;

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

const std::string& string_field(const Json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) throw Error(where + ": field '" + key + "' is missing");
  if (!it->is_string()) throw Error(where + ": field '" + key + "' must be a string");
  return it->get_ref<const std::string&>();
}

Example from_text(const Json& j, const tokenizer::Tokenizer& tok, const std::string& where) {
  Example ex;
  ex.tokens = engine::tokenize_prompt(tok, string_field(j, "text", where));
  ex.target.assign(ex.tokens.size(), 1);
  return ex;
}

// The loss on the completion (and EOS); field names the completion's field.
Example prompt_completion(const std::string& prompt, const std::string& completion,
                          const tokenizer::Tokenizer& tok, const std::string& where,
                          const char* field) {
  if (completion.empty()) throw Error(where + ": field '" + field + "' is empty");
  // Tokenized together (a completion's first word merges as it would in the
  // text); the loss starts where the prompt's own tokens stop matching.
  const std::vector<int32_t> p = engine::tokenize_prompt(tok, prompt);
  Example ex;
  ex.tokens = engine::tokenize_prompt(tok, prompt + completion);
  if (const auto eos = tok.eos(); eos && (ex.tokens.empty() || ex.tokens.back() != *eos))
    ex.tokens.push_back(*eos);
  const size_t start = std::min(common_prefix(p, ex.tokens), ex.tokens.size());
  ex.target.assign(ex.tokens.size(), 0);
  for (size_t i = std::max<size_t>(start, 1); i < ex.tokens.size(); ++i) ex.target[i] = 1;
  return ex;
}

Example from_prompt_completion(const Json& j, const tokenizer::Tokenizer& tok,
                               const std::string& where) {
  return prompt_completion(string_field(j, "prompt", where), string_field(j, "completion", where),
                           tok, where, "completion");
}

// Checks a messages array (field names it in errors); returns whether it has
// an assistant turn.
bool check_messages(const Json& msgs, const std::string& field, const std::string& where) {
  if (!msgs.is_array() || msgs.empty())
    throw Error(where + ": field '" + field + "' must be a non-empty array");
  bool any_assistant = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string at = where + ": field '" + field + "[" + std::to_string(i) + "]";
    if (!msgs[i].is_object()) throw Error(at + "' must be an object");
    const auto role = msgs[i].find("role");
    if (role == msgs[i].end() || !role->is_string()) throw Error(at + ".role' must be a string");
    const auto content = msgs[i].find("content");
    if (content == msgs[i].end() || !content->is_string())
      throw Error(at + ".content' must be a string");
    any_assistant = any_assistant || *role == "assistant";
  }
  return any_assistant;
}

// The conversation msgs rendered with the template; the loss is on the
// assistant turns from message first_trained on. field names msgs in errors.
Example messages_example(const Json& msgs, size_t first_trained, const tokenizer::Tokenizer& tok,
                         const chat::Template* tmpl, const std::string& where,
                         const std::string& field) {
  if (tmpl == nullptr)
    throw Error(where + ": field '" + field +
                "' needs a chat template, and the model has none (pass --template-file)");
  const auto render = [&](size_t n_msgs, bool gen_prompt) {
    chat::ChatInput in;
    in.messages = Json::array();
    for (size_t i = 0; i < n_msgs; ++i) in.messages.push_back(msgs[i]);
    in.add_generation_prompt = gen_prompt;
    engine::set_special_token_text(in, tok);
    try {
      return engine::tokenize_prompt(tok, engine::render_chat_prompt(*tmpl, in));
    } catch (const Error& e) {
      throw Error(where + ": field '" + field + "': " + e.what());
    }
  };
  Example ex;
  ex.tokens = render(msgs.size(), false);
  ex.target.assign(ex.tokens.size(), 0);
  // Each assistant turn: the tokens between the conversation up to it (with
  // the generation prompt) and the conversation including it.
  for (size_t i = first_trained; i < msgs.size(); ++i) {
    if (msgs[i]["role"] != "assistant") continue;
    // Templates may render the last turn differently from an earlier one
    // (Qwen3's think block), so the turn also runs at least to its
    // end-of-turn token in the whole conversation.
    const size_t start = common_prefix(render(i, true), ex.tokens);
    size_t end = common_prefix(render(i + 1, false), ex.tokens), eot = start;
    const std::vector<int32_t>& eog = tok.eog_ids();
    while (eot < ex.tokens.size() && std::find(eog.begin(), eog.end(), ex.tokens[eot]) == eog.end())
      ++eot;
    end = std::max(end, std::min(eot + 1, ex.tokens.size()));
    for (size_t t = std::max<size_t>(start, 1); t < end; ++t) ex.target[t] = 1;
  }
  return ex;
}

Example from_messages(const Json& j, const tokenizer::Tokenizer& tok, const chat::Template* tmpl,
                      const std::string& where) {
  const Json& msgs = j.at("messages");
  if (!check_messages(msgs, "messages", where))
    throw Error(where + ": field 'messages' has no assistant turn to train on");
  return messages_example(msgs, 0, tok, tmpl, where, "messages");
}

// One side of a preference line, checked: the completion string when the
// prompt is a string, else the whole conversation (prompt, then the side as
// one assistant turn or as its messages). A string prompt takes a string
// side; a messages prompt takes either.
Json preference_side(const Json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) throw Error(where + ": field '" + key + "' is missing");
  const Json& prompt = j.at("prompt");
  if (prompt.is_string()) {
    if (!it->is_string())
      throw Error(where + ": field '" + key + "' must be a string, as 'prompt' is");
    if (it->get_ref<const std::string&>().empty())
      throw Error(where + ": field '" + key + "' is empty");
    return *it;
  }
  Json convo = prompt;
  if (it->is_string()) {
    if (it->get_ref<const std::string&>().empty())
      throw Error(where + ": field '" + key + "' is empty");
    convo.push_back(Json{{"role", "assistant"}, {"content", *it}});
  } else {
    if (!it->is_array())
      throw Error(where + ": field '" + key + "' must be a string or an array of messages");
    if (!check_messages(*it, key, where))
      throw Error(where + ": field '" + key + "' has no assistant turn");
    for (const Json& m : *it) convo.push_back(m);
  }
  return convo;
}

// The example of a side checked by preference_side; the loss is on the side only.
Example preference_example(const Json& j, const Json& side, const char* key,
                           const tokenizer::Tokenizer& tok, const chat::Template* tmpl,
                           const std::string& where) {
  const Json& prompt = j.at("prompt");
  if (prompt.is_string())
    return prompt_completion(prompt.get_ref<const std::string&>(),
                             side.get_ref<const std::string&>(), tok, where, key);
  return messages_example(side, prompt.size(), tok, tmpl, where, key);
}

// Cuts or refuses an example longer than the context; refuses one with no
// target left. what names it in errors ("the example", "the chosen example").
void fit(Example& ex, const std::string& where, const std::string& what,
         const DataOptions& options) {
  const int64_t n = static_cast<int64_t>(ex.tokens.size());
  if (n > options.n_ctx) {
    if (!options.truncate)
      throw Error(where + ": " + what + " is " + std::to_string(n) +
                  " tokens, longer than the context of " + std::to_string(options.n_ctx) +
                  " (raise -c or pass --truncate)");
    ex.tokens.resize(static_cast<size_t>(options.n_ctx));
    ex.target.resize(static_cast<size_t>(options.n_ctx));
  }
  if (ex.n_targets() == 0) throw Error(where + ": " + what + " has no tokens to train on");
}

// Calls fn(line's JSON object, "name:LINE") for every non-blank line.
template <class Fn>
void for_each_line(std::string_view text, const std::string& name, Fn&& fn) {
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = name + ":" + std::to_string(line_no);
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw Error(where + ": not valid JSON");
    if (!j.is_object()) throw Error(where + ": a line must be a JSON object");
    fn(j, where);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the file");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace

std::vector<Example> parse_jsonl(std::string_view text, const std::string& name,
                                 const tokenizer::Tokenizer& tok, const chat::Template* tmpl,
                                 const DataOptions& options) {
  std::vector<Example> out;
  for_each_line(text, name, [&](const Json& j, const std::string& where) {
    Example ex;
    if (j.contains("chosen") || j.contains("rejected"))
      throw Error(
          where +
          ": field 'chosen'/'rejected' makes a preference line, which trains with DPO only");
    if (j.contains("messages"))
      ex = from_messages(j, tok, tmpl, where);
    else if (j.contains("prompt") || j.contains("completion"))
      ex = from_prompt_completion(j, tok, where);
    else if (j.contains("text"))
      ex = from_text(j, tok, where);
    else
      throw Error(where + ": field 'messages', 'prompt'/'completion' or 'text' is required");
    fit(ex, where, "the example", options);
    out.push_back(std::move(ex));
  });
  if (out.empty()) throw Error(name + ": no examples");
  return out;
}

std::vector<PreferencePair> parse_preference_jsonl(std::string_view text, const std::string& name,
                                                   const tokenizer::Tokenizer& tok,
                                                   const chat::Template* tmpl,
                                                   const DataOptions& options) {
  std::vector<PreferencePair> out;
  for_each_line(text, name, [&](const Json& j, const std::string& where) {
    const auto prompt = j.find("prompt");
    if (prompt == j.end())
      throw Error(where +
                  ": field 'prompt' is missing (a preference line is {prompt, chosen, rejected})");
    if (prompt->is_array()) {
      if (check_messages(*prompt, "prompt", where) && prompt->back()["role"] == "assistant")
        throw Error(where + ": field 'prompt' must not end with an assistant turn");
    } else if (!prompt->is_string()) {
      throw Error(where + ": field 'prompt' must be a string or an array of messages");
    }
    // Both sides are checked before either is rendered.
    const Json chosen = preference_side(j, "chosen", where),
               rejected = preference_side(j, "rejected", where);
    PreferencePair p{preference_example(j, chosen, "chosen", tok, tmpl, where),
                     preference_example(j, rejected, "rejected", tok, tmpl, where)};
    fit(p.chosen, where, "the chosen example", options);
    fit(p.rejected, where, "the rejected example", options);
    out.push_back(std::move(p));
  });
  if (out.empty()) throw Error(name + ": no examples");
  return out;
}

std::vector<Example> load_jsonl(const std::string& path, const tokenizer::Tokenizer& tok,
                                const chat::Template* tmpl, const DataOptions& options) {
  return parse_jsonl(read_file(path), path, tok, tmpl, options);
}

std::vector<PreferencePair> load_preference_jsonl(const std::string& path,
                                                  const tokenizer::Tokenizer& tok,
                                                  const chat::Template* tmpl,
                                                  const DataOptions& options) {
  return parse_preference_jsonl(read_file(path), path, tok, tmpl, options);
}

}  // namespace slm::train
