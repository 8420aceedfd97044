// Output constraints for every front end (slm run / chat / serve): a JSON
// Schema, any JSON object or GBNF text turned into the Grammar a Request
// carries (sequence.h), and a bounded cache of compiled grammars keyed by
// their source so a server compiles each schema once.
//
// Whitespace: the schema compiler accepts any run of whitespace between JSON
// tokens. For generation that is a trap: a model (a random or a weak one
// especially) can pad forever with whitespace tokens and never finish. The
// grammars made here allow one space, or a newline with up to 20 spaces or
// tabs of indentation, where JSON allows whitespace (as llama.cpp does); every
// output is still valid under the schema.
//
// Thread-safety: the functions are pure; GrammarCache is internally locked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/json_schema.h"

namespace slm::engine {

// The compiler's GBNF with generation-friendly whitespace (see above).
std::string bounded_whitespace(std::string gbnf);

// JSON Schema -> Grammar, with bounded whitespace. Throws slm::Error
// "json schema: POINTER: why" (json_schema.h) or a GBNF error.
std::shared_ptr<const grammar::Grammar> schema_grammar(std::string_view schema_json,
                                                       const grammar::SchemaOptions& options = {},
                                                       std::vector<std::string>* warnings = nullptr);
// Any JSON object.
std::shared_ptr<const grammar::Grammar> json_object_grammar();

// A least-recently-used map from a source key (kind + text + options, hashed
// with its full text compared) to a compiled grammar or to the error its
// compilation raised, so a bad schema sent again fails without recompiling.
class GrammarCache {
 public:
  explicit GrammarCache(size_t capacity = 256) : capacity_(capacity) {}
  using Compile = std::function<std::shared_ptr<const grammar::Grammar>()>;
  // The grammar for key, compiled by compile() on a miss (outside the lock;
  // two threads missing at once may both compile). Rethrows a cached error as
  // slm::Error with the same message.
  std::shared_ptr<const grammar::Grammar> get(const std::string& key, const Compile& compile);
  size_t size() const;
  int64_t hits() const;
  int64_t misses() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const grammar::Grammar> grammar;  // null: error
    std::string error;
  };
  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace slm::engine
