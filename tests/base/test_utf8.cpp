// base/utf8: Unicode table 3-7 well-formedness at every boundary, the first
// invalid offset, incomplete tails, decoding and encoding.
#include <gtest/gtest.h>

#include <string>

#include "base/utf8.h"

namespace slm::utf8 {
namespace {

constexpr size_t npos = std::string_view::npos;

size_t len_at0(std::string_view s, bool* incomplete = nullptr, size_t* bad = nullptr) {
  return valid_len(s, 0, incomplete, bad);
}

TEST(Utf8, ValidLenAcceptsEveryTable37Row) {
  EXPECT_EQ(len_at0("\x00"), 1u);
  EXPECT_EQ(len_at0("\x7F"), 1u);
  EXPECT_EQ(len_at0("\xC2\x80"), 2u);      // U+0080, smallest 2-byte
  EXPECT_EQ(len_at0("\xDF\xBF"), 2u);      // U+07FF
  EXPECT_EQ(len_at0("\xE0\xA0\x80"), 3u);  // U+0800, smallest 3-byte
  EXPECT_EQ(len_at0("\xE1\x80\x80"), 3u);
  EXPECT_EQ(len_at0("\xEC\xBF\xBF"), 3u);
  EXPECT_EQ(len_at0("\xED\x9F\xBF"), 3u);      // U+D7FF, just below the surrogates
  EXPECT_EQ(len_at0("\xEE\x80\x80"), 3u);      // U+E000, just above them
  EXPECT_EQ(len_at0("\xEF\xBF\xBF"), 3u);      // U+FFFF
  EXPECT_EQ(len_at0("\xF0\x90\x80\x80"), 4u);  // U+10000, smallest 4-byte
  EXPECT_EQ(len_at0("\xF3\xBF\xBF\xBF"), 4u);
  EXPECT_EQ(len_at0("\xF4\x8F\xBF\xBF"), 4u);  // U+10FFFF, the last code point
}

TEST(Utf8, ValidLenRejectsIllFormed) {
  size_t bad = 0;
  bool incomplete = true;
  // Overlong forms.
  EXPECT_EQ(len_at0("\xC0\x80", &incomplete, &bad), 0u);
  EXPECT_FALSE(incomplete);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(len_at0("\xC1\xBF"), 0u);
  EXPECT_EQ(len_at0("\xE0\x9F\xBF", nullptr, &bad), 0u);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(len_at0("\xF0\x8F\xBF\xBF"), 0u);
  // Surrogates U+D800..U+DFFF.
  EXPECT_EQ(len_at0("\xED\xA0\x80"), 0u);
  EXPECT_EQ(len_at0("\xED\xBF\xBF"), 0u);
  // Above U+10FFFF, and lead bytes that can never start a character.
  EXPECT_EQ(len_at0("\xF4\x90\x80\x80"), 0u);
  for (const char* lead :
       {"\xF5\x80\x80\x80", "\xF7\xBF\xBF\xBF", "\xF8\x88\x80\x80\x80", "\xFE", "\xFF"})
    EXPECT_EQ(len_at0(lead), 0u) << static_cast<int>(static_cast<unsigned char>(lead[0]));
  // Continuation bytes on their own.
  EXPECT_EQ(len_at0("\x80"), 0u);
  EXPECT_EQ(len_at0("\xBF"), 0u);
  // A bad later byte: the maximal subpart ends before it.
  EXPECT_EQ(len_at0("\xE2\x82\x41", &incomplete, &bad), 0u);
  EXPECT_FALSE(incomplete);
  EXPECT_EQ(bad, 2u);
  EXPECT_EQ(len_at0("\xF0\x9F\x98\xC3", nullptr, &bad), 0u);
  EXPECT_EQ(bad, 3u);
}

TEST(Utf8, ValidLenReportsTruncation) {
  bool incomplete = false;
  size_t bad = 0;
  EXPECT_EQ(len_at0("\xC3", &incomplete, &bad), 0u);
  EXPECT_TRUE(incomplete);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(len_at0("\xE2\x82", &incomplete), 0u);
  EXPECT_TRUE(incomplete);
  EXPECT_EQ(len_at0("\xF0\x9F\x98", &incomplete), 0u);
  EXPECT_TRUE(incomplete);
  // A prefix that is already invalid is not "incomplete".
  EXPECT_EQ(len_at0("\xE0\x80", &incomplete), 0u);
  EXPECT_FALSE(incomplete);
  EXPECT_EQ(len_at0("\xF4\x90", &incomplete), 0u);
  EXPECT_FALSE(incomplete);
  // valid_len looks at s[i..], not at the start of s.
  EXPECT_EQ(valid_len("ab\xC3\xA9", 2), 2u);
}

TEST(Utf8, FirstInvalidAndIsValid) {
  EXPECT_EQ(first_invalid(""), npos);
  EXPECT_EQ(first_invalid("plain"), npos);
  EXPECT_EQ(first_invalid("h\xC3\xA9llo \xF0\x9F\x98\x80"), npos);
  EXPECT_EQ(first_invalid("ab\x80"), 2u);            // stray continuation byte
  EXPECT_EQ(first_invalid("a\xC0\xAF"), 1u);         // overlong
  EXPECT_EQ(first_invalid("a\xE0\x80\xAF"), 1u);     // overlong
  EXPECT_EQ(first_invalid("\xED\xA0\x80"), 0u);      // surrogate
  EXPECT_EQ(first_invalid("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(first_invalid("ok\xE2\x82"), 2u);        // truncated at the end
  EXPECT_EQ(first_invalid("\xFE"), 0u);
  EXPECT_EQ(first_invalid(std::string("a\0b", 3)), npos);  // NUL is a character
  EXPECT_TRUE(is_valid("\xEF\xBB\xBFtext"));
  EXPECT_FALSE(is_valid("text\xC3"));
}

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(incomplete_tail(""), 0u);
  EXPECT_EQ(incomplete_tail("abc"), 0u);
  EXPECT_EQ(incomplete_tail("a\xC3"), 1u);
  EXPECT_EQ(incomplete_tail("a\xC3\xA9"), 0u);
  EXPECT_EQ(incomplete_tail("\xE3\x80"), 2u);
  EXPECT_EQ(incomplete_tail("\xF0\x9F\x9B"), 3u);
  EXPECT_EQ(incomplete_tail("\xF0\x9F\x9B\x91"), 0u);
  EXPECT_EQ(incomplete_tail("\xF4\x8F"), 2u);
  // Never well-formed, whatever follows: nothing to wait for.
  EXPECT_EQ(incomplete_tail("\x80\x80"), 0u);
  EXPECT_EQ(incomplete_tail("\xFF"), 0u);
  EXPECT_EQ(incomplete_tail("\xC0"), 0u);
  EXPECT_EQ(incomplete_tail("\xF5\x80"), 0u);
  EXPECT_EQ(incomplete_tail("\xE0\x80"), 0u);      // overlong prefix
  EXPECT_EQ(incomplete_tail("\xED\xA0"), 0u);      // surrogate prefix
  EXPECT_EQ(incomplete_tail("\xF4\x90\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(incomplete_tail("\x80\x80\x80\x80"), 0u);
}

TEST(Utf8, DecodeAndAppendRoundTrip) {
  for (const char32_t cp : {0x0u, 0x41u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFDu,
                            0xFFFFu, 0x10000u, 0x1F600u, 0x10FFFFu}) {
    std::string s;
    append(s, cp);
    EXPECT_TRUE(is_valid(s)) << std::hex << static_cast<uint32_t>(cp);
    size_t len = 0;
    EXPECT_EQ(decode(s, 0, &len), cp);
    EXPECT_EQ(len, s.size());
    EXPECT_EQ(valid_len(s, 0), s.size());
  }
  std::string s;
  append(s, 0xFFFD);
  EXPECT_EQ(s, kReplacement);
}

TEST(Utf8, DecodeTreatsStrayBytesAsThemselves) {
  size_t len = 0;
  EXPECT_EQ(decode("\xC3\xA9", 0, &len), 0xE9u);
  EXPECT_EQ(len, 2u);
  for (const char* bad :
       {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\xFF"}) {
    EXPECT_EQ(decode(bad, 0, &len), static_cast<char32_t>(static_cast<unsigned char>(bad[0])));
    EXPECT_EQ(len, 1u);
  }
  // Walking any bytes always advances and visits every byte once.
  const std::string junk = "a\xF0\x9F\x98\x80\xC3\xED\xA0\x80z\xE2\x82";
  size_t i = 0, steps = 0;
  while (i < junk.size()) {
    decode(junk, i, &len);
    ASSERT_GE(len, 1u);
    i += len;
    ++steps;
  }
  EXPECT_EQ(i, junk.size());
  EXPECT_EQ(steps, 9u);  // a, 😀, C3, ED, A0, 80, z, E2, 82
}

}  // namespace
}  // namespace slm::utf8
