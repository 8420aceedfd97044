// Prompts: the one place where text becomes the token ids a model is fed.
// `slm run`, `slm chat`, `slm serve` and `slm template` all build prompts
// here, so a model gets the same BOS/EOS handling from every front end.
//
// The rule (llama.cpp's, for tokenizer.ggml.add_bos_token / add_eos_token):
// the text is tokenized with special-token text parsed into special tokens;
// the tokenizer's BOS is put in front only when the vocabulary asks for it and
// the text does not already begin with it (a chat template that writes
// {{ bos_token }} must not produce two); likewise EOS goes at the end only
// when the vocabulary asks for it and the text does not already end with it.
// Chat templates see bos_token / eos_token as the tokenizer's BOS / EOS text.
//
// Errors: render_chat_prompt throws slm::Error when the messages are
// malformed and chat::TemplateError (a subclass) when the template fails.
// Thread-safety: pure functions over immutable tokenizer and template.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat/template.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {

struct PromptOptions {
  // false: never add BOS, whatever the vocabulary says (`slm run --no-bos`).
  bool allow_bos = true;
};

struct Prompt {
  std::string text;             // what was tokenized: the rendered template or the plain text
  std::vector<int32_t> tokens;  // BOS / EOS applied by the rule above
};

// Sets in.bos_token / in.eos_token to the tokenizer's BOS / EOS text (specials
// rendered); "" when the vocabulary has none.
void set_special_token_text(chat::ChatInput& in, const tokenizer::Tokenizer& tok);

// Renders a conversation with tmpl: in is checked and turned into the context
// as given (its bos_token / eos_token are used as they are).
std::string render_chat_prompt(const chat::Template& tmpl, const chat::ChatInput& in);

// text -> ids with special tokens parsed and BOS / EOS by the rule above.
std::vector<int32_t> tokenize_prompt(const tokenizer::Tokenizer& tok, std::string_view text,
                                     const PromptOptions& opts = {});

// A chat prompt: in's special-token text comes from tok, then render and tokenize.
Prompt build_chat_prompt(const tokenizer::Tokenizer& tok, const chat::Template& tmpl,
                         chat::ChatInput in, const PromptOptions& opts = {});

// A plain-text (completion) prompt.
Prompt build_text_prompt(const tokenizer::Tokenizer& tok, std::string_view text,
                         const PromptOptions& opts = {});

}  // namespace slm::engine
