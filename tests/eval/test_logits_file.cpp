// Top-k logits files: the save/compare round trip, KL on hand-made
// distributions, atomic writes and hostile files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "eval/logits_file.h"
#include "eval/logprob.h"
#include "eval/perplexity.h"
#include "eval_fixtures.h"

namespace slm::eval {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("slm-eval-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> log_row(const std::vector<double>& p) {
  std::vector<float> r;
  for (double x : p) r.push_back(static_cast<float>(std::log(x)));
  return r;
}

// Writes rows (each with target 0) to path with k entries.
void write_rows(const std::string& path, const std::vector<std::vector<float>>& rows, uint32_t k,
                uint64_t hash = 7) {
  LogitsHeader h;
  h.n_vocab = static_cast<uint32_t>(rows[0].size());
  h.k = k;
  h.n_ctx = 16;
  h.tokens_hash = hash;
  LogitsWriter w(path, h);
  for (const auto& r : rows) w.add(r, 0, log_normalizer(r));
  w.commit();
}

TEST(EvalLogitsFile, KlOfAHandMadeShiftOverTopKPlusRest) {
  const std::vector<double> pa = {0.5, 0.3, 0.1, 0.06, 0.04}, pb = {0.25, 0.25, 0.25, 0.125, 0.125};
  const std::string path = temp_path("shift.topk");
  write_rows(path, {log_row(pa)}, 2);
  const LogitsFile f = LogitsFile::read(path);
  ASSERT_EQ(f.header().n_positions, 1u);
  const TopKRecord r = f.record(0);
  EXPECT_EQ(r.ids[0], 0);
  EXPECT_EQ(r.ids[1], 1);
  EXPECT_NEAR(r.log_rest, std::log(0.2), 1e-6);
  EXPECT_NEAR(r.log_p_target, std::log(0.5), 1e-6);
  // Bins: token 0, token 1, the rest (0.2 against 0.5).
  const double expected =
      0.5 * std::log(0.5 / 0.25) + 0.3 * std::log(0.3 / 0.25) + 0.2 * std::log(0.2 / 0.5);
  LogitsHeader run = f.header();
  LogitsComparer cmp(f, run);
  std::vector<float> b = log_row(pb);
  for (float& x : b) x += 3.5f;  // unnormalised logits: the comparison normalises them
  cmp.add(0, b, 0, log_normalizer(b));
  const CompareResult c = cmp.finish();
  EXPECT_NEAR(c.kl_mean, expected, 1e-6);
  EXPECT_NEAR(c.kl_max, expected, 1e-6);
  EXPECT_NEAR(c.kl_median, expected, 1e-6);
  EXPECT_EQ(c.same_top1, 1.0);  // tokens 0, 1 and 2 tie in b; the lowest id is its argmax
  EXPECT_NEAR(c.ppl_ratio, 0.5 / 0.25, 1e-5);
}

TEST(EvalLogitsFile, SameDistributionGivesZeroKl) {
  const std::vector<double> pa = {0.1, 0.2, 0.3, 0.4};
  const std::string path = temp_path("same.topk");
  write_rows(path, {log_row(pa), log_row({0.4, 0.3, 0.2, 0.1})}, 4);  // k = n_vocab: no rest
  const LogitsFile f = LogitsFile::read(path);
  EXPECT_EQ(f.record(0).log_rest, -INFINITY);
  LogitsComparer cmp(f, f.header());
  std::vector<float> a = log_row(pa), b = log_row({0.4, 0.3, 0.2, 0.1});
  cmp.add(0, a, 0, log_normalizer(a));
  cmp.add(1, b, 0, log_normalizer(b));
  const CompareResult c = cmp.finish();
  EXPECT_LT(c.kl_max, 1e-6);
  EXPECT_EQ(c.same_top1, 1.0);
  EXPECT_NEAR(c.ppl_ratio, 1.0, 1e-6);
}

TEST(EvalLogitsFile, UncommittedWriterLeavesNothing) {
  const std::string path = temp_path("never.topk");
  fs::remove(path);
  {
    LogitsHeader h;
    h.n_vocab = 4;
    h.k = 2;
    LogitsWriter w(path, h);
    const std::vector<float> r = {0, 1, 2, 3};
    w.add(r, 1, log_normalizer(r));
  }
  EXPECT_FALSE(fs::exists(path));
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().string().find("never.topk.tmp"), std::string::npos) << e.path();
}

TEST(EvalLogitsFile, RefusesMismatchedRuns) {
  const std::string path = temp_path("mismatch.topk");
  write_rows(path, {log_row({0.5, 0.25, 0.25})}, 2, 42);
  const LogitsFile f = LogitsFile::read(path);
  LogitsHeader run = f.header();
  run.tokens_hash = 43;
  EXPECT_THROW(LogitsComparer(f, run), Error);
  run = f.header();
  run.n_ctx = 32;
  EXPECT_THROW(LogitsComparer(f, run), Error);
  run = f.header();
  run.n_vocab = 4;
  EXPECT_THROW(LogitsComparer(f, run), Error);
  LogitsComparer short_run(f, f.header());
  EXPECT_THROW(short_run.finish(), Error);  // scored 0 of 1 positions
  const std::vector<float> r = {0, 0, 0};
  EXPECT_THROW(short_run.add(1, r, 0, log_normalizer(r)), Error);  // more positions than stored
}

// Parses a mutated copy of a valid file and expects a refusal mentioning what.
void expect_refused(std::string bytes, const std::string& what) {
  try {
    LogitsFile::parse(bytes, "f.topk");
    ADD_FAILURE() << "accepted a file that should fail with: " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f.topk"), std::string::npos) << e.what();
  }
}

template <typename T>
std::string with(std::string b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
  return b;
}

TEST(EvalLogitsFile, RefusesHostileFiles) {
  const std::string path = temp_path("valid.topk");
  write_rows(path, {log_row({0.5, 0.3, 0.1, 0.1}), log_row({0.1, 0.2, 0.3, 0.4})}, 2);
  const std::string good = slurp(path);
  ASSERT_EQ(good.size(), 48u + 2 * (8 + 16));
  EXPECT_NO_THROW(LogitsFile::parse(good, "f.topk"));
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_THROW(LogitsFile::parse(good.substr(0, n), "f"), Error) << n;
  expect_refused(good + "x", "truncated");
  expect_refused(with<char>(good, 0, 'X'), "magic");
  expect_refused(with<uint32_t>(good, 8, 2), "version");
  expect_refused(with<uint32_t>(good, 12, 0), "n_vocab");
  expect_refused(with<uint32_t>(good, 12, 1u << 30), "n_vocab");
  expect_refused(with<uint32_t>(good, 16, 0), "k ");
  expect_refused(with<uint32_t>(good, 16, 5), "k ");
  expect_refused(with<uint32_t>(good, 28, 1), "reserved");
  expect_refused(with<uint64_t>(good, 40, 3), "positions");
  expect_refused(with<uint64_t>(good, 40, ~uint64_t{0}), "positions");
  const size_t rec = 48;  // first record: target, rest, {id, log_p} x 2
  expect_refused(with<float>(good, rec, NAN), "target");
  expect_refused(with<float>(good, rec, 0.5f), "target");
  expect_refused(with<float>(good, rec + 4, NAN), "rest");
  expect_refused(with<int32_t>(good, rec + 8, 4), "token id 4");
  expect_refused(with<int32_t>(good, rec + 8, -1), "token id -1");
  expect_refused(with<int32_t>(good, rec + 16, 0), "twice");
  expect_refused(with<float>(good, rec + 12, INFINITY), "log-probability");
  expect_refused(with<float>(good, rec + 20, -0.01f), "descending");
  expect_refused(with<float>(good, rec + 4, -0.01f), "sum");
  EXPECT_THROW(LogitsFile::read(temp_path("does-not-exist")), Error);
}

TEST(EvalLogitsFile, Stories260KRoundTripGivesZeroKl) {
  SLM_REQUIRE_STORIES();
  const auto& st = test::stories();
  const std::vector<int32_t> toks = st.tok.encode(st.text, true, false);
  PerplexityOptions o;
  o.n_ctx = 128;
  ThreadPool pool(2);
  LogitsHeader h;
  h.n_vocab = static_cast<uint32_t>(st.model->config().n_vocab);
  h.k = 32;
  h.n_ctx = 128;
  h.tokens_hash = hash_tokens(toks);
  const std::string path = temp_path("stories.topk");
  {
    LogitsWriter w(path, h);
    perplexity(*st.model, toks, st.tok.bos(), o, pool,
               [&](int64_t, std::span<const float> row, int32_t t, double z) { w.add(row, t, z); });
    w.commit();
  }
  const LogitsFile f = LogitsFile::read(path);
  EXPECT_EQ(fs::file_size(path), 48u + f.header().n_positions * (8 + 8 * 32));
  {
    LogitsComparer cmp(f, h);
    const PerplexityResult r = perplexity(
        *st.model, toks, st.tok.bos(), o, pool,
        [&](int64_t i, std::span<const float> row, int32_t t, double z) { cmp.add(i, row, t, z); });
    const CompareResult c = cmp.finish();
    EXPECT_EQ(c.n, static_cast<uint64_t>(r.nll.n));
    EXPECT_LT(c.kl_max, 1e-5);
    EXPECT_EQ(c.same_top1, 1.0);
    EXPECT_NEAR(c.ppl_ratio, 1.0, 1e-5);
    EXPECT_NEAR(c.ppl, r.nll.ppl(), 1e-9 * c.ppl);
  }
  {
    // A sharper model: logits x 2. Its KL per position is the top-k + rest KL of that row.
    LogitsComparer cmp(f, h);
    std::vector<float> hot;
    std::vector<uint8_t> mark(h.n_vocab, 0);
    double expected = 0;
    int64_t n = 0;
    perplexity(*st.model, toks, st.tok.bos(), o, pool,
               [&](int64_t i, std::span<const float> row, int32_t t, double) {
                 hot.assign(row.begin(), row.end());
                 for (float& x : hot) x *= 2;
                 const double z = log_normalizer(hot);
                 cmp.add(i, hot, t, z);
                 expected += topk_kl(f.record(static_cast<uint64_t>(i)), hot, z, mark);
                 ++n;
               });
    const CompareResult c = cmp.finish();
    EXPECT_NEAR(c.kl_mean, expected / static_cast<double>(n), 1e-9);
    EXPECT_GT(c.kl_mean, 0.01);
    EXPECT_GE(c.kl_max, c.kl_p99);
    EXPECT_GE(c.kl_p99, c.kl_median);
    EXPECT_EQ(c.same_top1, 1.0);  // scaling keeps the argmax
  }
  std::vector<int32_t> other = toks;
  other[5] = other[5] == 7 ? 8 : 7;
  h.tokens_hash = hash_tokens(other);
  EXPECT_THROW(LogitsComparer(f, h), Error);
}

}  // namespace
}  // namespace slm::eval
