// Training data: JSON Lines, one example per line, in one of three shapes:
//   {"messages": [{"role": ..., "content": ...}, ...]}  rendered with the
//       model's chat template; the loss is on the assistant turns only
//   {"prompt": "...", "completion": "..."}  the loss is on the completion
//       (and the end-of-sequence token when the vocabulary has one)
//   {"text": "..."}  the loss is on every token
// Preference data for DPO has one shape (parse_preference_jsonl):
//   {"prompt": str | messages, "chosen": str | messages, "rejected": str | messages}
//       a string prompt takes string completions (loss on the completion and
//       EOS, as above); a messages prompt takes a string (one assistant turn)
//       or messages (loss on their assistant turns)
// Blank lines are skipped. Every line is checked before training starts: a
// bad one is refused with "FILE:LINE: field ...", an example longer than the
// context with "FILE:LINE: ... tokens" unless truncate is set.
// Thread-safety: pure functions over immutable tokenizer and template.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "train/dpo.h"
#include "train/trainer.h"

namespace slm::chat {
class Template;
}
namespace slm::tokenizer {
class Tokenizer;
}

namespace slm::train {

struct DataOptions {
  int64_t n_ctx = 512;    // longest example, in tokens
  bool truncate = false;  // cut longer examples to n_ctx instead of refusing them
};

// Parses the text of a JSONL file (name for messages). tmpl may be null when
// no line uses "messages". Throws slm::Error "name:LINE: ..." at the first
// bad line.
std::vector<Example> parse_jsonl(std::string_view text, const std::string& name,
                                 const tokenizer::Tokenizer& tok, const chat::Template* tmpl,
                                 const DataOptions& options);
// Reads and parses a file.
std::vector<Example> load_jsonl(const std::string& path, const tokenizer::Tokenizer& tok,
                                const chat::Template* tmpl, const DataOptions& options);

// The same for preference lines (the chosen and the rejected side must each
// fit the context); an SFT line here, or a preference line in parse_jsonl, is
// refused.
std::vector<PreferencePair> parse_preference_jsonl(std::string_view text, const std::string& name,
                                                   const tokenizer::Tokenizer& tok,
                                                   const chat::Template* tmpl,
                                                   const DataOptions& options);
std::vector<PreferencePair> load_preference_jsonl(const std::string& path,
                                                  const tokenizer::Tokenizer& tok,
                                                  const chat::Template* tmpl,
                                                  const DataOptions& options);

}  // namespace slm::train
