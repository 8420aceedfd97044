// StopMatcher: stops split across pieces, overlapping and multiple stops,
// multi-byte UTF-8, a stop at the very start, and the release rules.
#include "engine/stop.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/utf8.h"

namespace slm::engine {
namespace {

struct Streamed {
  std::string text;                 // everything emitted, concatenated
  std::vector<std::string> chunks;  // what each feed / finish returned
  bool stopped = false;
};

Streamed stream(StopMatcher& m, const std::vector<std::string>& pieces) {
  Streamed s;
  for (const std::string& p : pieces) {
    const std::string out(m.feed(p));
    s.chunks.push_back(out);
    s.text += out;
  }
  if (!m.stopped()) {
    const std::string out(m.finish());
    s.chunks.push_back(out);
    s.text += out;
  }
  s.stopped = m.stopped();
  return s;
}

std::vector<std::string> bytes_of(const std::string& s) {
  std::vector<std::string> v;
  for (char c : s) v.emplace_back(1, c);
  return v;
}

bool valid_utf8_boundaries(const std::string& s) {
  // No chunk may end with an incomplete character (or start with a stray
  // continuation byte, which follows from the former for valid input).
  return utf8::incomplete_tail(s) == 0 && (s.empty() || (static_cast<unsigned char>(s[0]) & 0xC0) != 0x80);
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m;
  const auto s = stream(m, {"Hello", ", ", "world"});
  EXPECT_EQ(s.text, "Hello, world");
  EXPECT_EQ(s.chunks[0], "Hello");
  EXPECT_FALSE(s.stopped);
}

TEST(StopMatcher, StopSplitAcrossManyPieces) {
  StopMatcher m({"</s>"});
  const auto s = stream(m, {"Hello <", "/", "s", ">", " never shown"});
  EXPECT_EQ(s.text, "Hello ");
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(m.matched(), "</s>");
  EXPECT_EQ(s.chunks[0], "Hello ");  // "<" held back
  EXPECT_EQ(s.chunks[1], "");
  EXPECT_EQ(s.chunks[4], "");
}

TEST(StopMatcher, FalseStartIsReleasedOnceItCannotMatch) {
  StopMatcher m({"</s>"});
  auto s = stream(m, {"a <", "/", "x> b"});
  EXPECT_EQ(s.text, "a </x> b");
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(s.chunks[0], "a ");
  EXPECT_EQ(s.chunks[1], "");
  EXPECT_EQ(s.chunks[2], "</x> b");
}

TEST(StopMatcher, HeldTextIsReleasedByFinish) {
  StopMatcher m({"###"});
  const std::string out1(m.feed("abc#"));
  EXPECT_EQ(out1, "abc");
  const std::string out2(m.feed("#"));
  EXPECT_EQ(out2, "");
  EXPECT_EQ(m.finish(), "##");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, SelfOverlappingStopFedByteByByte) {
  StopMatcher m({"aab"});
  const auto s = stream(m, bytes_of("xaaab!"));
  EXPECT_EQ(s.text, "xa");
  EXPECT_TRUE(s.stopped);
}

TEST(StopMatcher, OverlappingStopsTheEarliestWins) {
  {
    StopMatcher m({"bcd", "abc"});
    EXPECT_EQ(stream(m, {"xabcd"}).text, "x");
    EXPECT_EQ(m.matched(), "abc");
  }
  {
    // "world" completes later in the same piece but "lo" starts first.
    StopMatcher m({"world", "lo"});
    EXPECT_EQ(stream(m, {"hello world"}).text, "hel");
    EXPECT_EQ(m.matched(), "lo");
  }
  {
    // One stop is a prefix of another: the shorter one matches as soon as it completes.
    StopMatcher m({"abc", "ab"});
    const auto s = stream(m, bytes_of("xabc"));
    EXPECT_EQ(s.text, "x");
    EXPECT_EQ(m.matched(), "ab");
  }
  {
    // A partial match of one stop overlapping a complete match of another.
    StopMatcher m({"<|im_end|>", "<|end|>"});
    const auto s = stream(m, {"ok<|", "en", "d|>more"});
    EXPECT_EQ(s.text, "ok");
    EXPECT_EQ(m.matched(), "<|end|>");
  }
}

TEST(StopMatcher, MultipleStopStrings) {
  for (const std::string stop : {"\nUser:", "</s>", "STOP"}) {
    StopMatcher m({"\nUser:", "</s>", "STOP"});
    const auto s = stream(m, bytes_of("answer " + stop + " tail"));
    EXPECT_EQ(s.text, "answer ") << stop;
    EXPECT_EQ(m.matched(), stop);
  }
}

TEST(StopMatcher, StopAtTheVeryStart) {
  StopMatcher m({"STOP"});
  const auto s = stream(m, {"STOP", "later"});
  EXPECT_EQ(s.text, "");
  EXPECT_TRUE(s.stopped);
  StopMatcher split({"STOP"});
  EXPECT_EQ(stream(split, {"S", "TO", "Prest"}).text, "");
  EXPECT_TRUE(split.stopped());
}

TEST(StopMatcher, MultiByteUtf8Stops) {
  const std::string text = "日本語。残り";
  {
    StopMatcher m({"。"});
    const auto s = stream(m, bytes_of(text));
    EXPECT_EQ(s.text, "日本語");
    EXPECT_TRUE(s.stopped);
    for (const std::string& c : s.chunks) EXPECT_TRUE(valid_utf8_boundaries(c)) << c;
  }
  {
    // A stop sharing its lead bytes with other characters (。 is E3 80 82,
    // 、 is E3 80 81): the shared prefix is held, then released.
    StopMatcher m({"。"});
    const auto s = stream(m, bytes_of("a、b。c"));
    EXPECT_EQ(s.text, "a、b");
  }
  {
    StopMatcher m({"🛑"});
    const std::string emoji = "🛑";
    const auto s = stream(m, {"go ", emoji.substr(0, 1), emoji.substr(1, 2), emoji.substr(3), "x"});
    EXPECT_EQ(s.text, "go ");
    EXPECT_TRUE(s.stopped);
  }
}

TEST(StopMatcher, IncompleteUtf8IsHeldWithoutStops) {
  StopMatcher m;
  const std::string e = "é";  // C3 A9
  EXPECT_EQ(m.feed("caf" + e.substr(0, 1)), "caf");
  EXPECT_EQ(m.feed(e.substr(1)), "é");
  // A stray continuation byte is not a character start: it passes through.
  EXPECT_EQ(m.feed("\x80"), "\x80");
  EXPECT_EQ(m.feed("\xE2\x82"), "");
  EXPECT_EQ(m.finish(), "\xE2\x82");  // released as is at the end
}

TEST(StopMatcher, NothingAfterTheStopAndReset) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.feed("abcEN"), "abc");
  EXPECT_EQ(m.feed("Dxyz"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.feed("more"), "");
  EXPECT_EQ(m.finish(), "");
  m.reset();
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.matched(), "");
  EXPECT_EQ(m.feed("fresh"), "fresh");
}

TEST(StopMatcher, EmptyStopStringsAreIgnored) {
  StopMatcher m({"", "x"});
  EXPECT_EQ(m.stops().size(), 1u);
  EXPECT_EQ(stream(m, {"abx"}).text, "ab");
}

}  // namespace
}  // namespace slm::engine
