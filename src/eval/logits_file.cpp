// Top-k logits files: atomic writer, hostile-input reader, KL comparison
// (layout in logits_file.h).
#include "eval/logits_file.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/error.h"
#include "eval/logprob.h"

namespace slm::eval {

static_assert(std::endian::native == std::endian::little, "logits files are little-endian");

namespace {

constexpr char kMagic[8] = {'S', 'L', 'M', 'T', 'O', 'P', 'K', '\0'};
constexpr uint32_t kVersion = 1;

size_t record_bytes(uint32_t k) {
  return 8 + 8 * static_cast<size_t>(k);
}

template <typename T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
T get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void encode_header(const LogitsHeader& h, uint8_t* p) {
  std::memset(p, 0, kLogitsHeaderBytes);
  std::memcpy(p, kMagic, 8);
  put<uint32_t>(p + 8, kVersion);
  put<uint32_t>(p + 12, h.n_vocab);
  put<uint32_t>(p + 16, h.k);
  put<uint32_t>(p + 20, h.n_ctx);
  put<uint32_t>(p + 24, h.stride);
  put<uint64_t>(p + 32, h.tokens_hash);
  put<uint64_t>(p + 40, h.n_positions);
}

// log(sum of exp(row[i] - log_z) over the ids not marked), in double.
double log_rest_mass(std::span<const float> row, double log_z, const std::vector<uint8_t>& mark) {
  double rest = 0;
  for (size_t i = 0; i < row.size(); ++i)
    if (!mark[i]) rest += std::exp(static_cast<double>(row[i]) - log_z);
  return rest > 0 ? std::log(rest) : -INFINITY;
}

}  // namespace

LogitsWriter::LogitsWriter(const std::string& path, const LogitsHeader& header)
    : path_(path), tmp_(path + ".tmp." + std::to_string(getpid())), header_(header) {
  if (header_.n_vocab == 0 || header_.n_vocab > kLogitsMaxVocab)
    throw Error(path + ": n_vocab " + std::to_string(header_.n_vocab) +
                " is out of range for a logits file");
  if (header_.k == 0 || header_.k > std::min(header_.n_vocab, kLogitsMaxK))
    throw Error("--top-k must be between 1 and " +
                std::to_string(std::min(header_.n_vocab, kLogitsMaxK)));
  header_.n_positions = 0;
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) throw Error(tmp_ + ": cannot create file");
  uint8_t h[kLogitsHeaderBytes];
  encode_header(header_, h);
  if (std::fwrite(h, 1, sizeof h, f_) != sizeof h) throw Error(tmp_ + ": write failed");
  record_.resize(record_bytes(header_.k));
  in_top_.assign(header_.n_vocab, 0);
}

LogitsWriter::~LogitsWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void LogitsWriter::add(std::span<const float> row, int32_t target, double log_z) {
  top_k(row, header_.k, top_);
  for (int32_t id : top_) in_top_[static_cast<size_t>(id)] = 1;
  const double rest = log_rest_mass(row, log_z, in_top_);
  for (int32_t id : top_) in_top_[static_cast<size_t>(id)] = 0;
  uint8_t* p = record_.data();
  put<float>(p, static_cast<float>(static_cast<double>(row[static_cast<size_t>(target)]) - log_z));
  put<float>(p + 4, static_cast<float>(rest));
  for (size_t j = 0; j < top_.size(); ++j) {
    put<int32_t>(p + 8 + 8 * j, top_[j]);
    put<float>(p + 12 + 8 * j,
               static_cast<float>(static_cast<double>(row[static_cast<size_t>(top_[j])]) - log_z));
  }
  if (std::fwrite(record_.data(), 1, record_.size(), f_) != record_.size())
    throw Error(tmp_ + ": write failed");
  ++header_.n_positions;
}

void LogitsWriter::commit() {
  uint8_t h[kLogitsHeaderBytes];
  encode_header(header_, h);
  const bool ok = std::fseek(f_, 0, SEEK_SET) == 0 && std::fwrite(h, 1, sizeof h, f_) == sizeof h &&
                  std::fflush(f_) == 0 && fsync(fileno(f_)) == 0;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok || !closed || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    throw Error(path_ + ": write failed");
  }
}

LogitsFile LogitsFile::parse(std::string_view b, const std::string& name) {
  const auto bad = [&](const std::string& why) {
    return Error(name + ": not a valid slm logits file: " + why);
  };
  if (b.size() < kLogitsHeaderBytes) throw bad("shorter than its 48-byte header");
  if (std::memcmp(b.data(), kMagic, 8) != 0) throw bad("wrong magic (expected SLMTOPK)");
  if (const uint32_t v = get<uint32_t>(b.data() + 8); v != kVersion)
    throw bad("version " + std::to_string(v) + " (this slm reads version 1)");
  LogitsFile f;
  f.name_ = name;
  LogitsHeader& h = f.header_;
  h.n_vocab = get<uint32_t>(b.data() + 12);
  h.k = get<uint32_t>(b.data() + 16);
  h.n_ctx = get<uint32_t>(b.data() + 20);
  h.stride = get<uint32_t>(b.data() + 24);
  h.tokens_hash = get<uint64_t>(b.data() + 32);
  h.n_positions = get<uint64_t>(b.data() + 40);
  if (h.n_vocab == 0 || h.n_vocab > kLogitsMaxVocab)
    throw bad("n_vocab " + std::to_string(h.n_vocab));
  if (h.k == 0 || h.k > std::min(h.n_vocab, kLogitsMaxK)) throw bad("k " + std::to_string(h.k));
  if (get<uint32_t>(b.data() + 28) != 0) throw bad("reserved field is not 0");
  const size_t rb = record_bytes(h.k);
  const size_t body = b.size() - kLogitsHeaderBytes;
  if (h.n_positions > body / rb || body != h.n_positions * rb)
    throw bad("header says " + std::to_string(h.n_positions) + " positions of " +
              std::to_string(rb) + " bytes but " + std::to_string(body) +
              " bytes follow (truncated?)");
  const size_t n = static_cast<size_t>(h.n_positions);
  f.target_.resize(n);
  f.rest_.resize(n);
  f.ids_.resize(n * h.k);
  f.log_p_.resize(n * h.k);
  std::vector<uint8_t> seen(h.n_vocab, 0);
  constexpr float kSlack = 1e-3f;  // float rounding of log-probabilities near 0
  for (size_t i = 0; i < n; ++i) {
    const char* p = b.data() + kLogitsHeaderBytes + i * rb;
    const std::string at = "position " + std::to_string(i) + ": ";
    const float t = get<float>(p), rest = get<float>(p + 4);
    if (!(std::isfinite(t) && t <= kSlack))
      throw bad(at + "target log-probability is not a finite value <= 0");
    if (std::isnan(rest) || rest > kSlack || rest == INFINITY)
      throw bad(at + "rest log-mass is not <= 0");
    f.target_[i] = t;
    f.rest_[i] = rest;
    double mass = std::exp(static_cast<double>(rest));
    for (size_t j = 0; j < h.k; ++j) {
      const int32_t id = get<int32_t>(p + 8 + 8 * j);
      const float lp = get<float>(p + 12 + 8 * j);
      if (id < 0 || static_cast<uint32_t>(id) >= h.n_vocab)
        throw bad(at + "token id " + std::to_string(id));
      if (seen[static_cast<size_t>(id)])
        throw bad(at + "token id " + std::to_string(id) + " appears twice");
      seen[static_cast<size_t>(id)] = 1;
      if (!(std::isfinite(lp) && lp <= kSlack))
        throw bad(at + "log-probability is not a finite value <= 0");
      if (j > 0 && lp > f.log_p_[i * h.k + j - 1])
        throw bad(at + "top-k entries are not in descending order");
      f.ids_[i * h.k + j] = id;
      f.log_p_[i * h.k + j] = lp;
      mass += std::exp(static_cast<double>(lp));
    }
    for (size_t j = 0; j < h.k; ++j) seen[static_cast<size_t>(f.ids_[i * h.k + j])] = 0;
    if (std::abs(mass - 1.0) > 1e-3)
      throw bad(at + "probabilities sum to " + std::to_string(mass) + ", not 1");
  }
  return f;
}

LogitsFile LogitsFile::read(const std::string& path) {
  // Read raw (no bzip2 sniffing: the magic decides).
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) throw Error(path + ": cannot open file");
  std::string bytes;
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, fp)) > 0) bytes.append(buf, got);
  const bool err = std::ferror(fp) != 0;
  std::fclose(fp);
  if (err) throw Error(path + ": read failed");
  return parse(bytes, path);
}

TopKRecord LogitsFile::record(uint64_t i) const {
  const size_t k = header_.k;
  return {target_[i], rest_[i], std::span<const int32_t>(ids_.data() + i * k, k),
          std::span<const float>(log_p_.data() + i * k, k)};
}

double topk_kl(const TopKRecord& base, std::span<const float> row, double log_z,
               std::vector<uint8_t>& mark) {
  double kl = 0;
  for (size_t j = 0; j < base.ids.size(); ++j) {
    const double lb = base.log_p[j];
    const double lt = static_cast<double>(row[static_cast<size_t>(base.ids[j])]) - log_z;
    kl += std::exp(lb) * (lb - lt);
  }
  if (base.log_rest != -INFINITY) {
    for (int32_t id : base.ids) mark[static_cast<size_t>(id)] = 1;
    const double rest = log_rest_mass(row, log_z, mark);
    for (int32_t id : base.ids) mark[static_cast<size_t>(id)] = 0;
    const double lb = base.log_rest;
    // A rest of zero mass here (every other logit -inf) makes the KL infinite.
    kl += std::exp(lb) * (lb - rest);
  }
  return std::max(kl, 0.0);
}

LogitsComparer::LogitsComparer(const LogitsFile& base, const LogitsHeader& run) : base_(base) {
  const LogitsHeader& h = base.header();
  const std::string& n = base.name();
  if (h.n_vocab != run.n_vocab)
    throw Error(n + ": saved from a model with n_vocab " + std::to_string(h.n_vocab) +
                ", this one has " + std::to_string(run.n_vocab));
  if (h.n_ctx != run.n_ctx || h.stride != run.stride)
    throw Error(n + ": saved with -c " + std::to_string(h.n_ctx) + " --stride " +
                std::to_string(h.stride) + "; this run uses -c " + std::to_string(run.n_ctx) +
                " --stride " + std::to_string(run.stride));
  if (h.tokens_hash != run.tokens_hash)
    throw Error(
        n +
        ": saved from a different token sequence (another text or tokenizer); refusing to compare");
  in_top_.assign(h.n_vocab, 0);
  kl_.reserve(static_cast<size_t>(h.n_positions));
}

void LogitsComparer::add(int64_t index, std::span<const float> row, int32_t target, double log_z) {
  if (index < 0 || static_cast<uint64_t>(index) >= base_.header().n_positions)
    throw Error(base_.name() + ": has " + std::to_string(base_.header().n_positions) +
                " positions; this run scores more");
  const TopKRecord r = base_.record(static_cast<uint64_t>(index));
  kl_.push_back(topk_kl(r, row, log_z, in_top_));
  nll_ += log_z - static_cast<double>(row[static_cast<size_t>(target)]);
  nll_base_ -= r.log_p_target;
  if (argmax(row) == r.ids[0]) ++same_;
}

CompareResult LogitsComparer::finish() const {
  CompareResult c;
  c.n = kl_.size();
  if (c.n != base_.header().n_positions)
    throw Error(base_.name() + ": has " + std::to_string(base_.header().n_positions) +
                " positions; this run scored " + std::to_string(c.n));
  if (c.n == 0) return c;
  std::vector<double> s = kl_;
  std::sort(s.begin(), s.end());
  double sum = 0;
  for (double v : s) sum += v;
  const double n = static_cast<double>(c.n);
  c.kl_mean = sum / n;
  c.kl_median = c.n % 2 ? s[c.n / 2] : 0.5 * (s[c.n / 2 - 1] + s[c.n / 2]);
  c.kl_p99 = s[std::min<size_t>(c.n - 1, static_cast<size_t>(std::ceil(0.99 * n)) - 1)];
  c.kl_max = s.back();
  c.same_top1 = static_cast<double>(same_) / n;
  c.ppl = std::exp(nll_ / n);
  c.ppl_base = std::exp(nll_base_ / n);
  c.ppl_ratio = c.ppl / c.ppl_base;
  return c;
}

}  // namespace slm::eval
