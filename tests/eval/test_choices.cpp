// Multiple choice: the HellaSwag and JSONL readers on good and hostile input,
// and scoring on stories260K with tasks whose answers are known.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "eval/choices.h"
#include "eval/tasks.h"
#include "eval_fixtures.h"
#include "model/session.h"

namespace slm::eval {
namespace {

// Expects parsing to fail with a message containing what (e.g. "t.txt:8:").
template <typename Fn>
void expect_error(Fn fn, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

const char kTwoTasks[] =
    "Roof: A man is on a roof. he\r\n3\r\nis a.\r\nis b.\r\nis c.\r\nstarts pulling up roofing.\r\n"
    "Clean: A lady walks. She\n0\nlifts.\nsits.\nruns.\nsleeps.";  // no final newline

TEST(EvalTasks, ReadsHellaSwagText) {
  const auto t = parse_hellaswag(kTwoTasks, "hs.txt");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].context, "Roof: A man is on a roof. he");
  EXPECT_EQ(t[0].gold, 3);
  EXPECT_EQ(t[0].endings[3], "starts pulling up roofing.");
  EXPECT_EQ(t[0].line, 1);
  EXPECT_EQ(t[1].line, 7);
  EXPECT_EQ(t[1].gold, 0);
  EXPECT_EQ(t[1].endings.size(), 4u);
  EXPECT_EQ(t[1].endings[3], "sleeps.");
  EXPECT_EQ(parse_hellaswag(kTwoTasks, "hs.txt", 1).size(), 1u);
}

TEST(EvalTasks, RefusesMalformedHellaSwag) {
  const auto hs = [](const std::string& text) {
    return [text] { parse_hellaswag(text, "hs.txt"); };
  };
  expect_error(hs(""), "hs.txt: no tasks");
  expect_error(hs("ctx\n3\na\nb\nc\nd\nctx2\n1\na\n"), "hs.txt:7: incomplete task");
  expect_error(hs("ctx\n4\na\nb\nc\nd\n"),
               "hs.txt:2: expected the right ending's index 0-3, found '4'");
  expect_error(hs("ctx\nx\na\nb\nc\nd\n"), "hs.txt:2:");
  expect_error(hs("ctx\n\na\nb\nc\nd\n"), "hs.txt:2:");
  expect_error(hs("ctx\n12\na\nb\nc\nd\n"), "hs.txt:2:");
  expect_error(hs("ctx\n1\na\nb\n\nd\n"), "hs.txt:5: empty ending");
}

TEST(EvalTasks, ReadsJsonl) {
  const std::string text =
      "{\"context\": \"The sky is\", \"endings\": [\"blue.\", \"green.\"], \"label\": 0}\n"
      "\n   \n"
      "{\"label\": 2, \"endings\": [\"a\", \"b\", \"c\"], \"context\": \"\", \"extra\": 1}\r\n";
  const auto t = parse_choices_jsonl(text, "c.jsonl");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].context, "The sky is");
  EXPECT_EQ(t[0].endings, (std::vector<std::string>{"blue.", "green."}));
  EXPECT_EQ(t[1].gold, 2);
  EXPECT_EQ(t[1].line, 4);
}

TEST(EvalTasks, RefusesMalformedJsonl) {
  const auto js = [](const std::string& line) {
    return [line] {
      parse_choices_jsonl("{\"context\":\"c\",\"endings\":[\"a\",\"b\"],\"label\":1}\n" + line,
                          "c.jsonl");
    };
  };
  expect_error(js("{\"context\": \"c\""), "c.jsonl:2: not valid JSON");
  expect_error(js("[1, 2]"), "c.jsonl:2: expected a JSON object");
  expect_error(js("{\"endings\": [\"a\", \"b\"], \"label\": 0}"), "c.jsonl:2: \"context\"");
  expect_error(js("{\"context\": 5, \"endings\": [\"a\", \"b\"], \"label\": 0}"),
               "c.jsonl:2: \"context\"");
  expect_error(js("{\"context\": \"c\", \"endings\": \"ab\", \"label\": 0}"),
               "c.jsonl:2: \"endings\"");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\"], \"label\": 0}"),
               "c.jsonl:2: \"endings\" must hold 2");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\", 3], \"label\": 0}"),
               "c.jsonl:2: \"endings\"");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\", \"\"], \"label\": 0}"),
               "c.jsonl:2: empty ending");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\", \"b\"]}"), "c.jsonl:2: \"label\"");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 2}"),
               "c.jsonl:2: \"label\" 2");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": -1}"),
               "c.jsonl:2: \"label\" -1");
  expect_error(js("{\"context\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 1.5}"),
               "c.jsonl:2: \"label\"");
  expect_error(
      js("{\"context\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 18446744073709551615}"),
      "c.jsonl:2: \"label\"");
  expect_error([] { parse_choices_jsonl("\n\n", "c.jsonl"); }, "c.jsonl: no tasks");
}

TEST(EvalChoices, AccuracyAndStandardError) {
  const Accuracy a = accuracy(3, 4);
  EXPECT_DOUBLE_EQ(a.value, 0.75);
  EXPECT_NEAR(a.stderr_, std::sqrt(0.75 * 0.25 / 3), 1e-15);
  EXPECT_EQ(accuracy(1, 1).stderr_, 0.0);
}

// Tasks cut from the model's own greedy story: the true continuation against
// garbage, the gold index rotating.
std::vector<ChoiceTask> known_tasks(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; std::getline(in, w, ' ');) words.push_back(w);
  const std::vector<std::string> garbage = {"Xq7 zzv plmk qwrt brrk vvx", "ghj kkl mnb vcx zzq ppo",
                                            "9f 8e 7d 6c 5b 4a 3z"};
  std::vector<ChoiceTask> tasks;
  for (size_t cut = 6, i = 0; cut + 8 < words.size() && tasks.size() < 8; cut += 5, ++i) {
    ChoiceTask t;
    for (size_t w = 0; w < cut; ++w) t.context += (w ? " " : "") + words[w];
    std::string truth;
    for (size_t w = cut; w < cut + 6; ++w) truth += (w > cut ? " " : "") + words[w];
    t.gold = static_cast<int>(i % 4);
    for (int e = 0, g = 0; e < 4; ++e) t.endings.push_back(e == t.gold ? truth : garbage[g++]);
    t.line = static_cast<int64_t>(i + 1);
    tasks.push_back(std::move(t));
  }
  return tasks;
}

TEST(EvalChoices, Stories260KPicksItsOwnContinuation) {
  SLM_REQUIRE_STORIES();
  const auto& st = test::stories();
  const std::vector<ChoiceTask> tasks = known_tasks(st.text);
  ASSERT_EQ(tasks.size(), 8u);
  ThreadPool pool(2);
  const ChoiceResult r = score_choices(*st.model, st.tok, tasks, {}, pool);
  ASSERT_EQ(r.tasks.size(), tasks.size());
  EXPECT_EQ(r.acc.value, 1.0);
  EXPECT_EQ(r.acc_norm_tokens.value, 1.0);
  EXPECT_EQ(r.acc_norm_chars.value, 1.0);
  EXPECT_EQ(r.acc.stderr_, 0.0);
  for (const TaskScore& t : r.tasks)
    for (const EndingScore& e : t.endings) {
      EXPECT_GT(e.n_tokens, 0);
      EXPECT_LT(e.sum_logprob, 0.0);
    }
  // The same tasks with the gold label moved: every metric scores 0.
  std::vector<ChoiceTask> wrong = tasks;
  for (ChoiceTask& t : wrong) t.gold = (t.gold + 1) % 4;
  const ChoiceResult w = score_choices(*st.model, st.tok, wrong, {}, pool);
  EXPECT_EQ(w.acc.value, 0.0);
  EXPECT_EQ(w.acc_norm_tokens.value, 0.0);
}

// Sum of log-probabilities of seq[from...] fed in one Session::feed call, in long double.
double direct_sum(const model::Model& m, const std::vector<int32_t>& seq, size_t from) {
  ThreadPool pool(1);
  model::SessionOptions so;
  so.n_ctx = static_cast<int64_t>(seq.size());
  model::Session s(m, so);
  std::vector<float> logits;
  s.feed(seq, pool, &logits);
  const int64_t n_vocab = m.config().n_vocab;
  long double sum = 0;
  for (size_t j = from; j < seq.size(); ++j) {
    const float* row = logits.data() + (j - 1) * n_vocab;
    long double z = 0;
    for (int64_t v = 0; v < n_vocab; ++v) z += std::exp(static_cast<long double>(row[v]));
    sum += static_cast<long double>(row[seq[j]]) - std::log(z);
  }
  return static_cast<double>(sum);
}

TEST(EvalChoices, BatchedScoresMatchOneSequenceAtATime) {
  SLM_REQUIRE_STORIES();
  const auto& st = test::stories();
  std::vector<ChoiceTask> tasks = known_tasks(st.text);
  tasks[1].endings.resize(2);  // a task with 2 endings and one with 3 in the same batch
  tasks[1].gold = std::min(tasks[1].gold, 1);
  tasks[2].endings.resize(3);
  tasks[2].gold = std::min(tasks[2].gold, 2);
  ThreadPool pool(2);
  const ChoiceResult batched = score_choices(*st.model, st.tok, tasks, {}, pool);
  ChoiceOptions one;
  one.max_rows = 1;      // raised to fit one task: one task per step
  one.max_sessions = 1;  // raised to one task's endings
  const ChoiceResult single = score_choices(*st.model, st.tok, tasks, one, pool);
  for (size_t i = 0; i < tasks.size(); ++i) {
    const ChoiceTask& t = tasks[i];
    // The reference: the common prefix of the endings' tokens, then each sequence alone.
    std::vector<std::vector<int32_t>> seqs;
    for (const auto& e : t.endings) seqs.push_back(st.tok.encode(t.context + " " + e, true, false));
    size_t p = 0;
    for (bool same = true; same; p += same) {
      for (const auto& s : seqs) same &= p < s.size() && s[p] == seqs[0][p];
    }
    for (size_t e = 0; e < t.endings.size(); ++e) {
      const double ref = direct_sum(*st.model, seqs[e], p);
      EXPECT_NEAR(batched.tasks[i].endings[e].sum_logprob, ref, 1e-3)
          << "task " << i << " ending " << e;
      EXPECT_NEAR(single.tasks[i].endings[e].sum_logprob, ref, 1e-3);
      EXPECT_EQ(batched.tasks[i].endings[e].n_tokens, static_cast<int64_t>(seqs[e].size() - p));
      EXPECT_EQ(batched.tasks[i].endings[e].n_chars, static_cast<int64_t>(t.endings[e].size()));
    }
  }
  EXPECT_EQ(batched.n_fed, single.n_fed);
}

TEST(EvalChoices, IdenticalEndingsTieToTheFirst) {
  SLM_REQUIRE_STORIES();
  const auto& st = test::stories();
  ChoiceTask t;
  t.context = "Once upon a time";
  t.endings = {"there was a cat.", "there was a cat.", "there was a cat."};
  t.gold = 2;
  ThreadPool pool(1);
  const ChoiceResult r = score_choices(*st.model, st.tok, std::vector<ChoiceTask>{t}, {}, pool);
  EXPECT_EQ(r.tasks[0].pred, 0);
  EXPECT_EQ(r.tasks[0].pred_norm_tokens, 0);
  EXPECT_EQ(r.tasks[0].endings[0].n_tokens,
            1);  // the shared prefix is capped: each scores its last token
  EXPECT_EQ(r.acc.value, 0.0);
}

}  // namespace
}  // namespace slm::eval
