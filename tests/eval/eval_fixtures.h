// Shared by the eval tests: the real stories260K model, its tokenizer and its
// greedy story text (fixtures/stories260K/), loaded once per test binary.
#pragma once

#include <memory>
#include <string>

#include "common/fixtures.h"
#include "eval/text_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace slm::test {

inline const char kStoriesModel[] = "models/stories260K.gguf";
inline const char kStoriesText[] = "stories260K/expected_greedy_t0_256.txt";

struct Stories {
  std::unique_ptr<model::Model> model;
  tokenizer::Tokenizer tok;
  std::string text;
};

inline const Stories& stories() {
  static const Stories s = [] {
    auto m = model::Model::load(fixture(kStoriesModel));
    auto t = tokenizer::Tokenizer::from_gguf(m->file());
    return Stories{std::move(m), std::move(t), eval::read_text_file(fixture(kStoriesText))};
  }();
  return s;
}

}  // namespace slm::test

#define SLM_REQUIRE_STORIES()                      \
  SLM_REQUIRE_FIXTURE(::slm::test::kStoriesModel); \
  SLM_REQUIRE_FIXTURE(::slm::test::kStoriesText)
