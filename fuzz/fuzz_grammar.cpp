// libFuzzer target for the grammar engine (style.md §7): the GBNF parser, the
// JSON Schema compiler and the matcher. The first byte picks the front end;
// the rest splits at the first NUL into the grammar (or schema) text and a
// document fed to the matcher with small limits, then a token mask is taken. Anything but slm::Error
// escaping, a sanitizer report, a hang or a stack overflow is a finding.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"
#include "grammar/token_mask.h"

namespace {

// Every byte plus some multi-byte tokens, as a vocabulary for masks.
const slm::grammar::TokenTrie& trie() {
  static const slm::grammar::TokenTrie t = [] {
    std::vector<std::string> v;
    for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
    for (const char* s : {"{\"", "\":", "\", \"", "true", "null", "12", "é", "\xE2\x82", "\xAC", "😀", "}]", ""})
      v.push_back(s);
    return slm::grammar::TokenTrie(v);
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool schema = data[0] & 1;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nul = rest.find('\0');
  const std::string_view text = rest.substr(0, nul);
  const std::string_view doc = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  slm::grammar::GrammarLimits glim;
  glim.max_elements = 1u << 16;
  glim.max_rules = 1u << 14;
  glim.max_repeat = 256;
  try {
    std::shared_ptr<const slm::grammar::Grammar> g;
    if (schema) {
      slm::grammar::SchemaOptions so;
      so.max_rules = 1u << 12;
      so.max_repeat = 256;
      const std::string gbnf = slm::grammar::json_schema_to_gbnf(text, so);
      g = std::make_shared<const slm::grammar::Grammar>(slm::grammar::parse_gbnf(gbnf, glim));
    } else {
      g = std::make_shared<const slm::grammar::Grammar>(slm::grammar::parse_gbnf(text, glim));
    }
    slm::grammar::MatcherLimits mlim;
    mlim.max_stacks = 256;
    mlim.max_depth = 512;
    mlim.max_expansions = 4096;
    slm::grammar::Matcher m(g, mlim);
    m.accept(doc);
    (void)m.is_complete();
    slm::grammar::MaskComputer mc(trie());
    std::vector<uint64_t> mask;
    mc.compute(m, mask);
  } catch (const slm::Error&) {
  }
  return 0;
}
