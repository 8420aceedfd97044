// Training checkpoints (train/checkpoint.h): a round trip restores every span
// exactly; a checkpoint of another model, another setting or another state
// is refused naming the difference; truncated and corrupted files give one
// slm::Error and leave the spans untouched, never a crash.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/gguf.h"
#include "train/checkpoint.h"

namespace slm::train {
namespace {

struct State {
  std::vector<float> a = std::vector<float>(37), b = std::vector<float>(5);
  std::vector<NamedSpan> spans() { return {{"blk.0.attn_q.weight.lora_a", a}, {"adam_m.x", b}}; }
};

State random_state(uint32_t seed) {
  State s;
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  for (float& x : s.a) x = d(rng);
  for (float& x : s.b) x = d(rng);
  return s;
}

const std::map<std::string, std::string> kSettings = {{"lr", "0.001"}, {"lora-rank", "4"}};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("slm-ckpt-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::string save_sample(const std::string& name, State& s) {
  const std::string path = temp_path(name);
  CheckpointInfo info;
  info.step = 7;
  info.adam_steps = 6;
  info.model = "0123456789abcdef";
  info.settings = kSettings;
  save_checkpoint(path, info, s.spans());
  return path;
}

std::string error_of(const std::string& path, const std::string& model,
                     const std::map<std::string, std::string>& settings, State& into) {
  try {
    load_checkpoint(path, model, settings, into.spans());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, RoundTripIsExact) {
  State s = random_state(1);
  const std::string path = save_sample("rt", s);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  State r = random_state(2);
  const CheckpointInfo info = load_checkpoint(path, "0123456789abcdef", kSettings, r.spans());
  EXPECT_EQ(info.step, 7u);
  EXPECT_EQ(info.adam_steps, 6u);
  EXPECT_EQ(info.settings, kSettings);
  EXPECT_EQ(r.a, s.a);
  EXPECT_EQ(r.b, s.b);
  std::filesystem::remove(path);
}

TEST(Checkpoint, RefusesAnotherRunNamingTheDifference) {
  State s = random_state(1);
  const std::string path = save_sample("mismatch", s);
  State r = random_state(2);
  const State before = r;
  EXPECT_NE(error_of(path, "fedcba9876543210", kSettings, r).find("another base model"),
            std::string::npos);
  auto other = kSettings;
  other["lora-rank"] = "8";
  EXPECT_NE(error_of(path, "0123456789abcdef", other, r)
                .find("setting 'lora-rank' differs: the checkpoint has 4, this run 8"),
            std::string::npos);
  other = kSettings;
  other["seed"] = "1";
  EXPECT_NE(error_of(path, "0123456789abcdef", other, r).find("setting 'seed' is missing"),
            std::string::npos);
  other = kSettings;
  other.erase("lr");
  EXPECT_NE(error_of(path, "0123456789abcdef", other, r).find("setting 'lr' is unknown"),
            std::string::npos);
  // Another state: a tensor of another size, a missing one, an extra one.
  std::vector<float> big(38), c(3);
  std::string e;
  try {
    load_checkpoint(path, "0123456789abcdef", kSettings,
                    std::vector<NamedSpan>{{"blk.0.attn_q.weight.lora_a", big}, {"adam_m.x", r.b}});
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("tensor 'blk.0.attn_q.weight.lora_a' has another type or size"),
            std::string::npos)
      << e;
  e.clear();
  try {
    load_checkpoint(path, "0123456789abcdef", kSettings,
                    std::vector<NamedSpan>{{"blk.0.attn_q.weight.lora_a", r.a}});
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("tensor 'adam_m.x' is not part of this run's state"), std::string::npos) << e;
  e.clear();
  try {
    load_checkpoint(path, "0123456789abcdef", kSettings,
                    std::vector<NamedSpan>{
                        {"blk.0.attn_q.weight.lora_a", r.a}, {"adam_m.x", r.b}, {"adam_v.x", c}});
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("tensor 'adam_v.x' is missing"), std::string::npos) << e;
  EXPECT_EQ(r.a, before.a);
  EXPECT_EQ(r.b, before.b);
  std::filesystem::remove(path);
}

// Every truncation and many single-byte corruptions: either one slm::Error
// naming the file, or (a flip in padding) the exact original state.
TEST(Checkpoint, TruncatedOrCorruptedFilesGiveOneError) {
  State s = random_state(1);
  const std::string good = save_sample("fuzz-src", s);
  const std::vector<uint8_t> bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 200u);
  const std::string path = temp_path("fuzz");
  int errors = 0, clean = 0;
  const auto check = [&](const std::vector<uint8_t>& b) {
    write_bytes(path, b);
    State r = random_state(2);
    const State before = r;
    const std::string e = error_of(path, "0123456789abcdef", kSettings, r);
    if (!e.empty()) {
      ++errors;
      EXPECT_EQ(e.rfind(path, 0), 0u) << e;
      EXPECT_EQ(r.a, before.a) << e;
      EXPECT_EQ(r.b, before.b) << e;
    } else {
      ++clean;
      EXPECT_EQ(r.a, s.a);
      EXPECT_EQ(r.b, s.b);
    }
  };
  // Every truncation that cuts into the data is refused (trailing alignment
  // padding may go).
  const auto file = gguf::File::open(good);
  const gguf::TensorInfo& last = file->tensors().back();
  const size_t data_end = static_cast<size_t>(file->data_offset() + last.offset + last.n_bytes);
  for (size_t n = 0; n < bytes.size(); ++n)
    check(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)));
  EXPECT_GE(errors, static_cast<int>(data_end));
  std::mt19937 rng(3);
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    std::vector<uint8_t> b = bytes;
    b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
    check(b);
  }
  // Every byte of the tensor data is covered by the checksum.
  int data_flips = 0;
  for (const gguf::TensorInfo& t : file->tensors())
    for (uint64_t i = 0; i < t.n_bytes; i += 3) {
      std::vector<uint8_t> b = bytes;
      b[static_cast<size_t>(file->data_offset() + t.offset + i)] ^= 0x10;
      write_bytes(path, b);
      State r;
      EXPECT_NE(error_of(path, "0123456789abcdef", kSettings, r).find("checksum mismatch"),
                std::string::npos);
      ++data_flips;
    }
  EXPECT_EQ(data_flips, 50 + 7);
  EXPECT_GT(errors, static_cast<int>(bytes.size()));
  std::filesystem::remove(path);
  std::filesystem::remove(good);
}

}  // namespace
}  // namespace slm::train
