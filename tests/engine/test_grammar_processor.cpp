// GrammarProcessor on the fixture vocabularies (Qwen byte-level BPE, 151936
// rows; Llama 2 SentencePiece, 32000): the mask allows exactly the tokens
// whose bytes keep the matcher viable (checked token by token), logits of the
// rest become -inf, end-of-generation is allowed only when complete, and the
// processor follows the history token by token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "common/fixtures.h"
#include "engine/grammar_processor.h"
#include "gguf/gguf.h"
#include "grammar/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

const char* kSchema = R"({"type":"object","properties":{"name":{"type":"string"},
  "age":{"type":"integer","minimum":0,"maximum":150},"tags":{"type":"array","items":{"enum":["a","bé"]}}},
  "required":["name","age"],"additionalProperties":false})";

tokenizer::Tokenizer load(const std::string& rel) {
  return tokenizer::Tokenizer::from_gguf(*gguf::File::open(test::fixture(rel)));
}

std::vector<bool> brute_force(grammar::Matcher& m, const std::vector<std::string>& bytes) {
  std::vector<bool> ok(bytes.size());
  grammar::Matcher::Snapshot s;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i].empty()) continue;
    m.save(s);
    size_t k = 0;
    while (k < bytes[i].size() && m.accept_byte(static_cast<uint8_t>(bytes[i][k]))) ++k;
    ok[i] = k == bytes[i].size();
    m.restore(s);
  }
  return ok;
}

void check_vocab(const std::string& rel) {
  SLM_REQUIRE_FIXTURE(rel);
  const auto tok = load(rel);
  auto vocab = std::make_shared<const GrammarVocab>(grammar_token_bytes(tok), tok.eog_ids());
  auto g = std::make_shared<const grammar::Grammar>(grammar::compile_json_schema(kSchema));
  const std::string doc = "{\"name\": \"Zoë 😀\", \"age\": 42, \"tags\": [\"bé\"]}";
  const auto ids = tok.encode(doc, /*add_special=*/false, /*parse_special=*/false);
  ASSERT_EQ(tok.decode(ids, {.render_special = true, .strip_space_prefix = true}), doc);

  GrammarProcessor proc(g, vocab);
  grammar::Matcher shadow(g);
  grammar::MaskComputer mc(vocab->trie);
  std::vector<int32_t> history = {1, 2, 3};  // a "prompt": never fed to the grammar
  std::vector<float> logits(static_cast<size_t>(tok.n_vocab()));
  for (size_t step = 0; step <= ids.size(); ++step) {
    std::fill(logits.begin(), logits.end(), 1.0f);
    proc.apply(logits, history);
    if (step % 4 == 0 || step == ids.size()) {  // the exhaustive check is slow on 151k tokens
      const auto want = brute_force(shadow, vocab->bytes);
      for (size_t i = 0; i < want.size(); ++i) {
        const bool eog = std::find(vocab->eog.begin(), vocab->eog.end(), int32_t(i)) != vocab->eog.end();
        const bool allowed = eog ? shadow.is_complete() : bool(want[i]);
        ASSERT_EQ(std::isfinite(logits[i]), allowed) << rel << " step " << step << " token " << i << " '"
                                                     << vocab->bytes[i] << "'";
      }
    }
    if (step < ids.size()) {
      ASSERT_TRUE(std::isfinite(logits[static_cast<size_t>(ids[step])])) << "step " << step;
      const std::string& b = vocab->bytes[static_cast<size_t>(ids[step])];
      ASSERT_EQ(shadow.accept(b), b.size());
      history.push_back(ids[step]);
    }
  }
  EXPECT_TRUE(proc.is_complete());
  // A token that does not continue the grammar is an error, not a silent skip.
  history.push_back(ids[0]);
  EXPECT_THROW(proc.apply(logits, history), slm::Error);
}

TEST(GrammarProcessor, QwenByteLevelBpe) { check_vocab("models/tiny-qwen2.gguf"); }
TEST(GrammarProcessor, LlamaSentencePiece) { check_vocab("models/tiny-llama.gguf"); }

}  // namespace
}  // namespace slm::engine
