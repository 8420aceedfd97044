// Top-k logits files: what `slm eval --save-logits` stores per scored token so
// that another model (quantized, pruned, fine-tuned) can later be compared
// with this one (`--compare-logits`) in MBs rather than full-vocabulary rows.
//
// Layout (little-endian), version 1; a header of 48 bytes:
//   0  char[8] magic "SLMTOPK\0"
//   8  u32     version (1)
//  12  u32     n_vocab                 (1 .. 2^24)
//  16  u32     k                       (1 .. min(n_vocab, 4096))
//  20  u32     n_ctx of the run        (the scored positions depend on it)
//  24  u32     stride of the run       (0: llama.cpp chunks)
//  28  u32     reserved, 0
//  32  u64     tokens_hash             hash_tokens() of the text's token ids
//  40  u64     n_positions
// then n_positions records of 8 + 8k bytes, one per scored token in order:
//   f32 log_p_target   log-probability of the token that actually followed
//   f32 log_rest       log(1 - mass of the k entries); -inf when none is left
//   k x {i32 id, f32 log_p}  the k most probable tokens, log_p non-increasing
// All log-probabilities come from a double log-softmax (logprob.h).
// Files are written to a temporary name and renamed into place when complete.
// Reading treats the file as hostile: every field, count and value is checked
// and a bad file is refused with slm::Error naming it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slm::eval {

struct LogitsHeader {
  uint32_t n_vocab = 0, k = 0, n_ctx = 0, stride = 0;
  uint64_t tokens_hash = 0, n_positions = 0;
};

inline constexpr size_t kLogitsHeaderBytes = 48;
inline constexpr uint32_t kLogitsMaxVocab = 1u << 24;
inline constexpr uint32_t kLogitsMaxK = 4096;

// One stored position, viewed in a parsed file.
struct TopKRecord {
  float log_p_target = 0, log_rest = 0;
  std::span<const int32_t> ids;  // [k]
  std::span<const float> log_p;  // [k]
};

// Writes one file; positions are added in order, commit() renames it into
// place. Destroying an uncommitted writer removes its temporary file.
class LogitsWriter {
 public:
  LogitsWriter(const std::string& path, const LogitsHeader& header);  // n_positions is counted
  ~LogitsWriter();
  LogitsWriter(const LogitsWriter&) = delete;
  LogitsWriter& operator=(const LogitsWriter&) = delete;
  // row: [n_vocab] logits; log_z: log_normalizer(row).
  void add(std::span<const float> row, int32_t target, double log_z);
  void commit();
  uint64_t n_positions() const { return header_.n_positions; }

 private:
  std::string path_, tmp_;
  LogitsHeader header_;
  std::FILE* f_ = nullptr;
  std::vector<int32_t> top_;
  std::vector<uint8_t> record_;
  std::vector<uint8_t> in_top_;  // [n_vocab] marks of the current top-k
};

// A parsed, fully validated file held in memory.
class LogitsFile {
 public:
  static LogitsFile parse(std::string_view bytes, const std::string& name);
  static LogitsFile read(const std::string& path);
  const LogitsHeader& header() const { return header_; }
  const std::string& name() const { return name_; }
  TopKRecord record(uint64_t i) const;

 private:
  std::string name_;
  LogitsHeader header_;
  std::vector<float> target_, rest_;  // [n_positions]
  std::vector<int32_t> ids_;          // [n_positions][k]
  std::vector<float> log_p_;          // [n_positions][k]
};

// Distribution shift of this run against a stored base run.
struct CompareResult {
  uint64_t n = 0;
  double kl_mean = 0, kl_median = 0, kl_p99 = 0, kl_max = 0;
  double same_top1 = 0;  // share of positions whose argmax is the base's top token
  double ppl_base = 0, ppl = 0, ppl_ratio = 0;
};

// KL(base || this) per position over k + 1 bins: the base's k tokens and the
// rest of the vocabulary (a lower bound of the full KL, exact when the rest is
// empty); tiny negative values from float rounding count as 0.
class LogitsComparer {
 public:
  // Checks that the file matches this run (n_vocab, n_ctx, stride, text hash).
  LogitsComparer(const LogitsFile& base, const LogitsHeader& run);
  void add(int64_t index, std::span<const float> row, int32_t target, double log_z);
  // Throws slm::Error when the run scored a different number of positions.
  CompareResult finish() const;

 private:
  const LogitsFile& base_;
  std::vector<double> kl_;
  std::vector<uint8_t> in_top_;
  double nll_ = 0, nll_base_ = 0;
  uint64_t same_ = 0;
};

// The KL over k + 1 bins of one position: base record against this run's row.
double topk_kl(const TopKRecord& base, std::span<const float> row, double log_z,
               std::vector<uint8_t>& mark);

}  // namespace slm::eval
