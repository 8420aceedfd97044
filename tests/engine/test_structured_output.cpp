// Structured output end to end on the engine path of slm run (Generator with a
// Request grammar): 200 generated JSON Schemas (tests/common/schema_gen.h) on
// the random-weight tiny-qwen2 (byte-level BPE, 151936 tokens) and tiny-llama
// (SentencePiece, 32000) fixtures, sampled at temperature 1. Every answer that
// ends by itself must parse as JSON and validate against its schema; answers
// cut by max_tokens are counted apart and must be rare.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "common/fixtures.h"
#include "common/schema_gen.h"
#include "engine/constraint.h"
#include "engine/generator.h"
#include "engine/prompt.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace slm::engine {
namespace {

using Json = nlohmann::json;
constexpr int kSchemas = 200;

void run_schemas(const std::string& rel) {
  SLM_REQUIRE_FIXTURE(rel);
  const auto model = model::Model::load(test::fixture(rel));
  const auto tok = tokenizer::Tokenizer::from_gguf(model->file());
  ThreadPool pool(1);
  model::SessionOptions so;
  so.n_ctx = 512;
  Generator gen(*model, tok, pool, so);
  const std::vector<int32_t> prompt = tokenize_prompt(tok, "Answer in JSON:");
  test::SchemaGen schemas(2026);
  int valid = 0, cut = 0;
  for (int i = 0; i < kSchemas; ++i) {
    const Json schema = schemas.schema();
    SCOPED_TRACE("schema " + std::to_string(i) + ": " + schema.dump());
    GenerateOptions o;
    o.n_predict = 200;
    o.sampling.temperature = 1.0f;
    o.sampling.top_k = 0;
    o.sampling.top_p = 1.0f;
    o.sampling.min_p = 0.0f;
    o.sampling.seed = static_cast<uint64_t>(i) + 1;
    o.grammar = schema_grammar(schema.dump());
    gen.reset();
    const GenerateResult r = gen.generate(prompt, o, nullptr);
    if (r.finish == FinishReason::kLength) {
      ++cut;
      continue;
    }
    ASSERT_EQ(r.finish, FinishReason::kStop);
    const Json doc = Json::parse(r.text, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << "not JSON: " << r.text;
    std::string why;
    EXPECT_TRUE(test::validate(doc, schema, schema, why)) << why << "\n" << r.text;
    ++valid;
  }
  std::printf("%s: %d of %d schemas answered and valid, %d cut by max_tokens\n", rel.c_str(), valid,
              kSchemas, cut);
  EXPECT_GE(valid, kSchemas * 9 / 10) << cut << " answers cut by max_tokens";
}

TEST(StructuredOutput, TwoHundredSchemasQwen) { run_schemas("models/tiny-qwen2.gguf"); }
TEST(StructuredOutput, TwoHundredSchemasLlama) { run_schemas("models/tiny-llama.gguf"); }

// The validator itself rejects what it should (so a pass above means something).
TEST(StructuredOutput, ValidatorRejects) {
  const Json s = Json::parse(R"({"type":"object","properties":{"a":{"type":"integer","minimum":1,"maximum":3},
    "d":{"type":"string","format":"date"},"p":{"type":"string","pattern":"^[a-z]{1,4}$"},
    "l":{"type":"array","items":{"enum":["x"]},"maxItems":1}},"required":["a"],"additionalProperties":false})");
  std::string why;
  EXPECT_TRUE(test::validate(Json::parse(R"({"a":2,"d":"2024-02-29","p":"ab","l":["x"]})"), s, s, why)) << why;
  for (const char* bad : {R"({"a":4})", R"({})", R"({"a":1,"z":0})", R"({"a":1,"d":"2024-04-31"})", R"({"a":1,"d":"2023-02-29"})",
                          R"({"a":1,"p":"abcde"})", R"({"a":1,"l":["x","x"]})", R"({"a":1.5})"})
    EXPECT_FALSE(test::validate(Json::parse(bad), s, s, why)) << bad;
}

}  // namespace
}  // namespace slm::engine
