// A fixture model with its tokenizer, for the engine tests that decode text.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/fixtures.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace slm::test {

struct LoadedModel {
  std::unique_ptr<model::Model> model;
  std::optional<tokenizer::Tokenizer> tok;  // optional: a Tokenizer has no empty state
};

// rel: relative to the fixtures folder, e.g. "models/stories260K.gguf".
inline LoadedModel load_model(const std::string& rel) {
  LoadedModel l;
  l.model = model::Model::load(fixture(rel));
  l.tok.emplace(tokenizer::Tokenizer::from_gguf(l.model->file()));
  return l;
}

}  // namespace slm::test
