// Output constraints (constraint.h).
#include "engine/constraint.h"

#include "base/error.h"

namespace slm::engine {

std::string bounded_whitespace(std::string gbnf) {
  static constexpr std::string_view kWide = "ws ::= [ \\t\\n\\r]*\n";
  static constexpr std::string_view kBounded = "ws ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n";
  const size_t at = gbnf.find(kWide);
  if (at != std::string::npos && (at == 0 || gbnf[at - 1] == '\n'))
    gbnf.replace(at, kWide.size(), kBounded);
  return gbnf;
}

std::shared_ptr<const grammar::Grammar> schema_grammar(std::string_view schema_json,
                                                       const grammar::SchemaOptions& options,
                                                       std::vector<std::string>* warnings) {
  const std::string gbnf =
      bounded_whitespace(grammar::json_schema_to_gbnf(schema_json, options, warnings));
  return std::make_shared<const grammar::Grammar>(grammar::parse_gbnf(gbnf));
}

std::shared_ptr<const grammar::Grammar> json_object_grammar() {
  static const std::shared_ptr<const grammar::Grammar> g = schema_grammar(R"({"type":"object"})");
  return g;
}

std::shared_ptr<const grammar::Grammar> GrammarCache::get(const std::string& key,
                                                          const Compile& compile) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (const auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      if (!it->second->grammar) throw Error(it->second->error);
      return it->second->grammar;
    }
    ++misses_;
  }
  Entry e{key, nullptr, {}};
  try {
    e.grammar = compile();
  } catch (const Error& err) {
    e.error = err.what();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (const auto it = index_.find(key); it != index_.end()) {
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(e);
  index_[key] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  if (!e.grammar) throw Error(e.error);
  return e.grammar;
}

size_t GrammarCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lru_.size();
}
int64_t GrammarCache::hits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return hits_;
}
int64_t GrammarCache::misses() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return misses_;
}

}  // namespace slm::engine
