#include "engine/prompt.h"

namespace slm::engine {

void set_special_token_text(chat::ChatInput& in, const tokenizer::Tokenizer& tok) {
  in.bos_token = tok.bos() ? tok.token_to_piece(*tok.bos(), true) : std::string();
  in.eos_token = tok.eos() ? tok.token_to_piece(*tok.eos(), true) : std::string();
}

std::string render_chat_prompt(const chat::Template& tmpl, const chat::ChatInput& in) {
  return tmpl.render(chat::make_chat_context(in));
}

std::vector<int32_t> tokenize_prompt(const tokenizer::Tokenizer& tok, std::string_view text,
                                     const PromptOptions& opts) {
  // Special tokens are parsed, so "the text begins with BOS" is the same as
  // "the first token is BOS", whichever spelling of it the template used.
  std::vector<int32_t> ids = tok.encode(text, /*add_special=*/false, /*parse_special=*/true);
  if (opts.allow_bos && tok.add_bos() && (ids.empty() || ids.front() != *tok.bos()))
    ids.insert(ids.begin(), *tok.bos());
  if (tok.add_eos() && (ids.empty() || ids.back() != *tok.eos())) ids.push_back(*tok.eos());
  return ids;
}

Prompt build_chat_prompt(const tokenizer::Tokenizer& tok, const chat::Template& tmpl,
                         chat::ChatInput in, const PromptOptions& opts) {
  set_special_token_text(in, tok);
  Prompt p;
  p.text = render_chat_prompt(tmpl, in);
  p.tokens = tokenize_prompt(tok, p.text, opts);
  return p;
}

Prompt build_text_prompt(const tokenizer::Tokenizer& tok, std::string_view text,
                         const PromptOptions& opts) {
  Prompt p;
  p.text = std::string(text);
  p.tokens = tokenize_prompt(tok, text, opts);
  return p;
}

}  // namespace slm::engine
