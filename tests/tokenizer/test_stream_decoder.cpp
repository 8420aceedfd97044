// StreamDecoder: chunks are always whole UTF-8 characters, and together they
// are the full decode.
#include <gtest/gtest.h>

#include "base/utf8.h"
#include "tok_fixtures.h"

namespace slm::test {
namespace {

using tokenizer::StreamDecoder;
using tokenizer::Tokenizer;

const char* const kTexts[] = {
    "東京の病院でMRIスキャンと診療記録を同時に解析する。",
    "Family: 👨‍👩‍👧‍👦, flags: 🇰🇪🇫🇷🇯🇵, skin tones: 👍🏽, keycap: "
    "1️⃣",
    "مرحبا بالعالم! هذا اختبار للنموذج اللغوي الصغير.",
    "नमस्ते दुनिया, यह एक छोटा भाषा मॉडल है।",
    "안녕하세요, 세계! 작은 언어 모델입니다. ᐊᐃᓐᖓ Ꮳ ትግርኛ ქართული",
    "<|im_start|>user\n你好，世界！<|im_end|>",
};

void check_stream(const Tokenizer& tok, const std::string& text) {
  const auto ids = tok.encode(text, false, true);
  StreamDecoder stream(tok);
  std::string all;
  size_t held_max = 0;
  for (int32_t id : ids) {
    const std::string chunk = stream.push(id);
    EXPECT_TRUE(utf8::is_valid(chunk)) << "chunk after id " << id;
    held_max = std::max(held_max, stream.pending_bytes());
    EXPECT_LE(stream.pending_bytes(), 3u);
    all += chunk;
  }
  all += stream.flush();
  EXPECT_EQ(all, tok.decode(ids));
  EXPECT_EQ(all, text);
}

TEST(StreamDecoder, ByteLevelBpeNeverSplitsCharacters) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const Tokenizer tok = load_gguf_tokenizer("models/tiny-qwen2.gguf");
  for (const char* t : kTexts) check_stream(tok, t);
}

TEST(StreamDecoder, SentencePieceByteFallbackNeverSplitsCharacters) {
  SLM_REQUIRE_FIXTURE("tokenizer/gguf-vocab/ggml-vocab-llama-spm.gguf");
  const Tokenizer tok = load_gguf_tokenizer("tokenizer/gguf-vocab/ggml-vocab-llama-spm.gguf");
  for (const char* t : kTexts) check_stream(tok, t);
  // Emoji and Hangul here are byte-fallback tokens: one byte per token, so the
  // decoder must hold up to three bytes.
  const auto ids = tok.encode("👍", false, false);
  ASSERT_EQ(ids.size(), 5u);  // "▁" + four <0xNN>
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(ids[0]), "");  // the stripped space prefix
  EXPECT_EQ(stream.push(ids[1]), "");
  EXPECT_EQ(stream.push(ids[2]), "");
  EXPECT_EQ(stream.push(ids[3]), "");
  EXPECT_EQ(stream.pending_bytes(), 3u);
  EXPECT_EQ(stream.push(ids[4]), "👍");
  EXPECT_EQ(stream.flush(), "");
}

TEST(StreamDecoder, InvalidSequencesBecomeReplacementCharacters) {
  SLM_REQUIRE_FIXTURE("tokenizer/gguf-vocab/ggml-vocab-llama-spm.gguf");
  const Tokenizer tok = load_gguf_tokenizer("tokenizer/gguf-vocab/ggml-vocab-llama-spm.gguf");
  auto byte = [&](int b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    return *tok.find_token(buf);
  };
  const std::string fffd = "\xEF\xBF\xBD";
  StreamDecoder s(tok);
  EXPECT_EQ(s.push(byte(0xFF)), fffd);  // never valid
  EXPECT_EQ(s.push(byte(0xE3)), "");
  EXPECT_EQ(s.push(byte(0x81)), "");
  EXPECT_EQ(s.push(byte(0x41)), fffd + "A");  // truncated character, then 'A'
  EXPECT_EQ(s.push(byte(0xF0)), "");
  EXPECT_EQ(s.flush(), fffd);  // held bytes at the end of the stream
  EXPECT_EQ(s.pending_bytes(), 0u);
  EXPECT_EQ(s.push(byte(0xC3)), "");
  s.reset();
  EXPECT_EQ(s.push(byte(0x41)), "A");
  EXPECT_EQ(s.push(byte(0xED)), "");  // ED A0 80 would be a surrogate
  EXPECT_EQ(s.push(byte(0xA0)), fffd + fffd);
  EXPECT_THROW(s.push(tok.n_vocab()), Error);
}

TEST(StreamDecoder, SkipsControlTokensWhenAsked) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const Tokenizer tok = load_gguf_tokenizer("models/tiny-qwen2.gguf");
  tokenizer::DecodeOptions opt;
  opt.render_special = false;
  StreamDecoder s(tok, opt);
  std::string all;
  for (int32_t id : tok.encode("<|im_start|>assistant\n<think>hi</think><|im_end|>", false, true))
    all += s.push(id);
  all += s.flush();
  EXPECT_EQ(all, "assistant\n<think>hi</think>");  // user-defined tokens still render
}

}  // namespace
}  // namespace slm::test
