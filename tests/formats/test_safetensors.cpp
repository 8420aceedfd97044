// The safetensors reader on a file the test writes, and on every kind of
// corruption it must refuse with a message naming the file and the tensor.
#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"

namespace slm::formats {
namespace {

std::vector<uint8_t> make(const std::string& header, const std::vector<uint8_t>& data) {
  const uint64_t n = header.size();
  std::vector<uint8_t> out(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

template <class T>
void put(std::vector<uint8_t>& d, T v) {
  const size_t at = d.size();
  d.resize(at + sizeof(T));
  std::memcpy(d.data() + at, &v, sizeof(T));
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    Safetensors::parse(bytes, "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ReadsAGoodFile) {
  std::vector<uint8_t> data;
  for (float f : {1.0f, -2.0f, 3.5f, 0.25f, 5.0f, 6.0f}) put(data, f);  // a: F32 [2, 3]
  for (float f : {1.5f, -3.0f}) put(data, f32_to_fp16(f));               // b: F16 [2]
  for (float f : {0.5f, 8.0f, -1.0f, 2.0f}) put(data, f32_to_bf16(f));  // c: BF16 [2, 2]
  const std::string header =
      R"({"__metadata__": {"format": "pt"},)"
      R"( "c": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [28, 36]},)"
      R"( "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},)"
      R"( "b": {"dtype": "F16", "shape": [2], "data_offsets": [24, 28]}})";
  const std::vector<uint8_t> bytes = make(header, data);
  const auto f = Safetensors::parse(bytes, "good.safetensors");
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->tensors()[0].name, "a");  // file order
  EXPECT_EQ(f->tensors()[2].name, "c");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const StTensor* a = f->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->n_elements, 6);
  float v[6];
  st_to_float(*a, 1, 5, v);
  EXPECT_EQ(v[0], -2.0f);
  EXPECT_EQ(v[4], 6.0f);
  st_to_float(*f->find("b"), 0, 2, v);
  EXPECT_EQ(v[0], 1.5f);
  EXPECT_EQ(v[1], -3.0f);
  st_to_float(*f->find("c"), 0, 4, v);
  EXPECT_EQ(v[1], 8.0f);
  EXPECT_EQ(v[2], -1.0f);
  EXPECT_EQ(f->find("missing"), nullptr);
}

TEST(Safetensors, EmptyHeaderIsAFileWithoutTensors) {
  const auto f = Safetensors::parse(make("{}", {}), "empty.safetensors");
  EXPECT_TRUE(f->tensors().empty());
}

struct Bad {
  const char* what;
  std::string header;
  size_t data_bytes;
  const char* expect;  // a part of the message
};

TEST(Safetensors, RefusesEveryCorruption) {
  const std::vector<Bad> cases = {
      {"invalid JSON", R"({"a": {"dtype": )", 0, "not valid JSON"},
      {"not an object", R"([1, 2])", 0, "not a JSON object"},
      {"entry not an object", R"({"w": 5})", 0, "tensor 'w'"},
      {"unknown dtype", R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}})", 4, "unknown dtype 'F7'"},
      {"dtype not a string", R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", 4, "'dtype'"},
      {"size mismatch", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8, "need 8"},
      {"beyond data", R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8, "beyond the data section"},
      {"begin after end", R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 8, "is after end"},
      {"overlap",
       R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       12, "overlaps"},
      {"duplicate name",
       R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
       8, "listed twice"},
      {"shape overflow",
       R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})", 4,
       "overflows"},
      {"byte size overflow", R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 4]}})", 4,
       "overflows"},
      {"negative dimension", R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4, "non-negative"},
      {"offsets not a pair", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4, "data_offsets"},
      {"negative offset", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4, "data_offsets"},
      {"metadata not strings", R"({"__metadata__": {"format": 1}})", 0, "__metadata__"},
      {"too many dimensions", R"({"w": {"dtype": "U8", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 1]}})", 1,
       "dimensions"},
  };
  for (const Bad& c : cases) {
    const std::string msg = error_of(make(c.header, std::vector<uint8_t>(c.data_bytes)));
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << c.what << ": " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.what << ": " << msg;
    if (c.header.find("\"w\"") != std::string::npos && std::string(c.what) != "invalid JSON") {
      EXPECT_NE(msg.find("'w'"), std::string::npos) << c.what << ": " << msg;
    }
  }
}

TEST(Safetensors, RefusesABadLengthPrefix) {
  EXPECT_NE(error_of({1, 2, 3}).find("too short"), std::string::npos);
  std::vector<uint8_t> big = make("{}", {});
  big[0] = 200;  // header length far beyond the file
  EXPECT_NE(error_of(big).find("exceeds the file"), std::string::npos);
  std::vector<uint8_t> huge = make("{}", {});
  huge[7] = 0xff;
  EXPECT_NE(error_of(huge).find("exceeds the file"), std::string::npos);
}

TEST(Safetensors, OpenNamesAMissingFile) {
  try {
    Safetensors::open("/nonexistent/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.safetensors"), std::string::npos);
  }
}

}  // namespace
}  // namespace slm::formats
