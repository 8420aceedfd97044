// GGUF reader: round trip through the writer, every value type, and hostile
// files that must each be refused with their own message (style.md §7).
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "base/error.h"
#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"

namespace slm::gguf {
namespace {

// Builds raw GGUF bytes field by field so tests can break any of them.
class Raw {
 public:
  Raw& u32(uint32_t v) { return put(v); }
  Raw& u64(uint64_t v) { return put(v); }
  Raw& str(const std::string& s) {
    u64(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  Raw& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return u32(0x46554747).u32(version).u64(n_tensors).u64(n_kv);
  }
  Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  Raw& tensor(const std::string& name, std::vector<uint64_t> shape, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(shape.size()));
    for (uint64_t d : shape) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad_to(size_t align) {
    bytes.resize((bytes.size() + align - 1) / align * align, 0);
    return *this;
  }
  Raw& zeros(size_t n) {
    bytes.resize(bytes.size() + n, 0);
    return *this;
  }
  template <typename T>
  Raw& put(T v) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
    return *this;
  }
  std::vector<uint8_t> bytes;
};

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    File::parse(bytes, "test.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_REFUSED(bytes, fragment)                                     \
  do {                                                                      \
    const std::string msg_ = parse_error(bytes);                            \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << "message: " << msg_; \
    EXPECT_EQ(msg_.rfind("test.gguf: ", 0), 0u) << msg_;                    \
  } while (0)

TEST(GgufWriter, RoundTripsEveryValueAndTensor) {
  Writer w;
  w.add_string("general.architecture", "llama");
  w.add_bool("flag", true);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -7);
  w.add_u64("u64", 1ull << 40);
  w.add_f32("f32", 0.5f);
  w.add_strings("strs", {"a", "", "ünï"});
  w.add_f32s("floats", {1.5f, -2.0f});
  w.add_i32s("ints", {3, -4, 5});
  std::vector<uint8_t> data(3 * 34);  // three Q8_0 blocks
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  w.add_tensor("q", DType::Q8_0, {32, 3}, data);
  const std::vector<float> f = {1, 2, 3, 4};
  w.add_tensor("f", DType::F32, {4}, {reinterpret_cast<const uint8_t*>(f.data()), 16});
  const std::vector<uint8_t> bytes = w.to_bytes();

  const auto file = File::parse(bytes, "rt.gguf");
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->get_string("general.architecture"), "llama");
  EXPECT_EQ(file->get_bool("flag"), true);
  EXPECT_EQ(file->get_uint("u32"), 4000000000u);
  EXPECT_EQ(file->get_int("i32"), -7);
  EXPECT_EQ(file->get_uint("u64"), 1ull << 40);
  EXPECT_EQ(file->get_float("f32"), 0.5);
  EXPECT_EQ(*file->get_strings("strs"), (std::vector<std::string_view>{"a", "", "ünï"}));
  EXPECT_EQ(*file->get_floats("floats"), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(*file->get_ints("ints"), (std::vector<int64_t>{3, -4, 5}));
  EXPECT_FALSE(file->get_string("absent").has_value());
  EXPECT_THROW(file->get_string("u32"), Error);    // wrong type names the key
  EXPECT_THROW(file->get_uint("i32"), Error);      // negative where a count is wanted
  ASSERT_EQ(file->tensors().size(), 2u);
  const TensorInfo* q = file->find_tensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, DType::Q8_0);
  EXPECT_EQ(q->ne[0], 32);
  EXPECT_EQ(q->ne[1], 3);
  EXPECT_EQ(q->n_bytes, data.size());
  EXPECT_EQ(std::memcmp(q->data, data.data(), data.size()), 0);
  EXPECT_EQ((q->data - bytes.data()) % 32, 0);
  const TensorInfo* ft = file->find_tensor("f");
  ASSERT_NE(ft, nullptr);
  EXPECT_EQ(std::memcmp(ft->data, f.data(), 16), 0);
}

TEST(GgufWriter, CustomAlignment) {
  Writer w;
  w.set_alignment(64);
  const std::vector<float> f = {1, 2, 3};
  w.add_tensor("a", DType::F32, {3}, {reinterpret_cast<const uint8_t*>(f.data()), 12});
  w.add_tensor("b", DType::F32, {3}, {reinterpret_cast<const uint8_t*>(f.data()), 12});
  const std::vector<uint8_t> bytes = w.to_bytes();
  const auto file = File::parse(bytes, "a.gguf");
  EXPECT_EQ(file->alignment(), 64u);
  EXPECT_EQ(file->find_tensor("b")->offset, 64u);
}

TEST(GgufWriter, LazyTensorsStreamToAFile) {
  Writer w;
  w.add_string("general.architecture", "llama");
  w.add_tensor_lazy("big", DType::Q8_0, {64, 5}, [](uint8_t* dst) {
    for (int i = 0; i < 5 * 2 * 34; ++i) dst[i] = static_cast<uint8_t>(i);
  });
  const std::vector<float> f = {7, 8};
  w.add_tensor("small", DType::F32, {2}, {reinterpret_cast<const uint8_t*>(f.data()), 8});
  const std::string path = ::testing::TempDir() + "/lazy.gguf";
  std::vector<std::pair<size_t, uint64_t>> progress;
  w.write(path, [&](size_t done, size_t total, uint64_t bytes) {
    EXPECT_EQ(total, 2u);
    progress.emplace_back(done, bytes);
  });
  const auto file = File::open(path);
  // Progress after each tensor; the size is known before anything is written.
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_EQ(progress[1], std::make_pair(size_t{2}, file->file_size()));
  EXPECT_EQ(w.file_size(), file->file_size());
  const TensorInfo* big = file->find_tensor("big");
  ASSERT_NE(big, nullptr);
  ASSERT_EQ(big->n_bytes, 340u);
  for (int i = 0; i < 340; ++i) ASSERT_EQ(big->data[i], static_cast<uint8_t>(i));
  EXPECT_EQ(std::memcmp(file->find_tensor("small")->data, f.data(), 8), 0);
  const std::vector<uint8_t> mem = w.to_bytes();
  EXPECT_EQ(mem.size(), file->file_size());
  EXPECT_THROW(w.add_tensor_lazy("bad", DType::Q4_0, {33}, [](uint8_t*) {}), Error);
}

TEST(GgufReader, ReadsEveryScalarTypeAndNestedArrays) {
  Raw r;
  r.header(3, 0, 13);
  r.str("u8").u32(0).put<uint8_t>(200);
  r.str("i8").u32(1).put<int8_t>(-100);
  r.str("u16").u32(2).put<uint16_t>(60000);
  r.str("i16").u32(3).put<int16_t>(-30000);
  r.str("u32").u32(4).put<uint32_t>(7);
  r.str("i32").u32(5).put<int32_t>(-7);
  r.str("f32").u32(6).put<float>(1.25f);
  r.str("bool").u32(7).put<uint8_t>(1);
  r.str("str").u32(8).str("hello");
  r.str("u64").u32(10).put<uint64_t>(1ull << 50);
  r.str("i64").u32(11).put<int64_t>(-(1ll << 50));
  r.str("f64").u32(12).put<double>(-2.5);
  // array of 2 arrays of u16
  r.str("nested").u32(9).u32(9).u64(2);
  r.u32(2).u64(2).put<uint16_t>(1).put<uint16_t>(2);
  r.u32(2).u64(1).put<uint16_t>(3);
  const auto f = File::parse(r.bytes, "types.gguf");
  EXPECT_EQ(f->get_uint("u8"), 200u);
  EXPECT_EQ(f->get_int("i8"), -100);
  EXPECT_EQ(f->get_uint("u16"), 60000u);
  EXPECT_EQ(f->get_int("i16"), -30000);
  EXPECT_EQ(f->get_float("f32"), 1.25);
  EXPECT_EQ(f->get_bool("bool"), true);
  EXPECT_EQ(f->get_string("str"), "hello");
  EXPECT_EQ(f->get_uint("u64"), 1ull << 50);
  EXPECT_EQ(f->get_int("i64"), -(1ll << 50));
  EXPECT_EQ(f->get_float("f64"), -2.5);
  const Value* nested = f->find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[0].integer_at(1), 2);
  EXPECT_EQ(nested->items[1].integer_at(0), 3);
}

TEST(GgufReader, AcceptsVersion2) {
  Raw r;
  r.header(2, 0, 1).kv_u32("a", 1);
  EXPECT_EQ(File::parse(r.bytes, "v2.gguf")->version(), 2u);
}

// A valid one-tensor file: F32 [8] at offset 0.
Raw valid_one_tensor(uint32_t type = 0, std::vector<uint64_t> shape = {8}, uint64_t offset = 0) {
  Raw r;
  r.header(3, 1, 1).kv_u32("k", 1).tensor("w", shape, type, offset).pad_to(32).zeros(64);
  return r;
}

TEST(GgufReader, ValidBaseFileParses) { EXPECT_EQ(parse_error(valid_one_tensor().bytes), ""); }

TEST(GgufMalformed, BadMagic) {
  Raw r = valid_one_tensor();
  r.bytes[0] = 'X';
  EXPECT_REFUSED(r.bytes, "not a GGUF file (bad magic)");
  const std::vector<uint8_t> two = {'G', 'G'};
  EXPECT_REFUSED(two, "bad magic");
}

TEST(GgufMalformed, BadOrFutureVersion) {
  Raw a;
  a.header(1, 0, 0);
  EXPECT_REFUSED(a.bytes, "GGUF version 1 is not supported");
  Raw b;
  b.header(4, 0, 0);
  EXPECT_REFUSED(b.bytes, "unsupported GGUF version 4");
}

TEST(GgufMalformed, TruncatedHeader) {
  Raw r = valid_one_tensor();
  std::vector<uint8_t> cut(r.bytes.begin(), r.bytes.begin() + 12);
  EXPECT_REFUSED(cut, "truncated file: tensor count");
  std::vector<uint8_t> cut2(r.bytes.begin(), r.bytes.begin() + 30);
  EXPECT_REFUSED(cut2, "truncated file");
}

TEST(GgufMalformed, AbsurdCounts) {
  Raw a;
  a.header(3, 0, 1ull << 60).zeros(64);
  EXPECT_REFUSED(a.bytes, "corrupt metadata count 1152921504606846976: larger than the file can hold");
  Raw b;
  b.header(3, std::numeric_limits<uint64_t>::max(), 0).zeros(64);
  EXPECT_REFUSED(b.bytes, "corrupt tensor count 18446744073709551615: larger than the file can hold");
  Raw c;
  c.header(3, 0, 1).str("arr").u32(9).u32(4).u64(1ull << 62).zeros(16);
  EXPECT_REFUSED(c.bytes, "key 'arr': array of 4611686018427387904 elements runs past the end");
}

TEST(GgufMalformed, StringLengthPastEnd) {
  Raw a;
  a.header(3, 0, 1).u64(1000).zeros(8);
  EXPECT_REFUSED(a.bytes, "metadata key: string length 1000 runs past the end");
  Raw b;
  b.header(3, 0, 1).str("name").u32(8).u64(std::numeric_limits<uint64_t>::max());
  EXPECT_REFUSED(b.bytes, "value of key 'name': string length 18446744073709551615 runs past the end");
}

TEST(GgufMalformed, UnknownValueType) {
  Raw a;
  a.header(3, 0, 1).str("k").u32(13).u32(0);
  EXPECT_REFUSED(a.bytes, "key 'k': unknown value type 13");
  Raw b;
  b.header(3, 0, 1).str("k").u32(9).u32(99).u64(0);
  EXPECT_REFUSED(b.bytes, "key 'k': unknown array element type 99");
}

TEST(GgufMalformed, TensorDataPastEnd) {
  Raw r = valid_one_tensor(0, {8}, 32);  // 32 bytes at offset 32 > 64 available? fits exactly
  EXPECT_EQ(parse_error(r.bytes), "");
  Raw s = valid_one_tensor(0, {8}, 64);
  EXPECT_REFUSED(s.bytes, "tensor 'w': data (offset 64, 32 bytes) runs past the end of the file");
  Raw t = valid_one_tensor(0, {8}, 0xffffffffffffffe0ull);
  EXPECT_REFUSED(t.bytes, "runs past the end of the file");
}

TEST(GgufMalformed, MisalignedOffset) {
  Raw r = valid_one_tensor(0, {8}, 4);
  EXPECT_REFUSED(r.bytes, "tensor 'w': data offset 4 is not a multiple of the alignment 32");
}

TEST(GgufMalformed, NonPowerOfTwoAlignment) {
  Raw r;
  r.header(3, 0, 1).kv_u32("general.alignment", 48);
  EXPECT_REFUSED(r.bytes, "general.alignment must be a power of two, got 48");
  Raw z;
  z.header(3, 0, 1).kv_u32("general.alignment", 0);
  EXPECT_REFUSED(z.bytes, "general.alignment must be a power of two, got 0");
}

TEST(GgufMalformed, DuplicateKey) {
  Raw r;
  r.header(3, 0, 2).kv_u32("dup", 1).kv_u32("dup", 2);
  EXPECT_REFUSED(r.bytes, "duplicate metadata key 'dup'");
}

TEST(GgufMalformed, DuplicateTensorName) {
  Raw r;
  r.header(3, 2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad_to(32).zeros(64);
  EXPECT_REFUSED(r.bytes, "duplicate tensor name 'w'");
}

TEST(GgufMalformed, TooManyDimensions) {
  Raw r = valid_one_tensor(0, {2, 2, 2, 2, 2});
  EXPECT_REFUSED(r.bytes, "tensor 'w': 5 dimensions (1 to 4 allowed)");
  Raw z = valid_one_tensor(0, {});
  EXPECT_REFUSED(z.bytes, "tensor 'w': 0 dimensions");
}

TEST(GgufMalformed, UnknownDtype) {
  Raw r = valid_one_tensor(77);
  EXPECT_REFUSED(r.bytes, "tensor 'w': unsupported tensor type 77");
  Raw q = valid_one_tensor(15, {256});  // Q8_K is an activation type, never a weight
  EXPECT_REFUSED(q.bytes, "tensor 'w': unsupported tensor type 15 (Q8_K)");
}

TEST(GgufMalformed, ShapeOverflow) {
  Raw r = valid_one_tensor(0, {1ull << 32, 1ull << 32});
  EXPECT_REFUSED(r.bytes, "tensor 'w': shape overflows");
  Raw z = valid_one_tensor(0, {8, 0});
  EXPECT_REFUSED(z.bytes, "tensor 'w': shape overflows or has a zero dimension");
  // Element count fits but bytes do not: 2^62 F32 elements.
  Raw b = valid_one_tensor(0, {1ull << 31, 1ull << 31});
  EXPECT_REFUSED(b.bytes, "tensor 'w': byte size overflows");
}

TEST(GgufMalformed, RowNotMultipleOfBlock) {
  Raw r = valid_one_tensor(2, {40});  // Q4_0 blocks hold 32
  EXPECT_REFUSED(r.bytes, "tensor 'w': row length 40 is not a multiple of the Q4_0 block size 32");
}

TEST(GgufMalformed, DeeplyNestedArrays) {
  Raw r;
  r.header(3, 0, 1).str("deep").u32(9);
  for (int i = 0; i < 6; ++i) r.u32(9).u64(1);
  r.zeros(16);
  EXPECT_REFUSED(r.bytes, "key 'deep': arrays nested too deeply");
}

TEST(GgufReader, EveryPrefixOfARealFileIsRefusedCleanly) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const auto whole = File::open(test::fixture("models/stories260K.gguf"));
  std::vector<uint8_t> bytes(whole->file_size());
  std::memcpy(bytes.data(), whole->tensors()[0].data - whole->data_offset() - whole->tensors()[0].offset,
              bytes.size());
  // Every cut inside the header, and a sample of cuts in the data, must throw.
  const size_t header = whole->data_offset();
  for (size_t cut = 0; cut < bytes.size(); cut += cut < header ? 1 : 4099) {
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + cut);
    EXPECT_THROW(File::parse(part, "cut.gguf"), Error) << "cut at " << cut;
  }
}

TEST(GgufReader, ReadsRealFixture) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const auto f = File::open(test::fixture("models/tiny-qwen2.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f->get_strings("tokenizer.ggml.tokens")->size(), 151936u);
  EXPECT_NE(f->find_tensor("token_embd.weight"), nullptr);
  EXPECT_THROW(File::open(test::fixture("models/does-not-exist.gguf")), Error);
}

}  // namespace
}  // namespace slm::gguf
