// slm chat end to end on tiny-qwen2 (real Qwen2.5 template and vocabulary):
// through a pipe and through a pseudo-terminal (tmux), over three turns.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

const char* kQwenSystem = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

std::string qwen() { return sh_quote(fixture("models/tiny-qwen2.gguf")); }

std::vector<std::string> prompts_in(const std::string& err) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = err.find("[prompt]\n", at)) != std::string::npos) {
    const size_t end = err.find("[/prompt]", at);
    out.push_back(err.substr(at + 9, end - at - 9));
    at = end;
  }
  return out;
}

struct TurnStats {
  long prompt, reused, generated;
};
std::vector<TurnStats> stats_in(const std::string& err) {
  std::vector<TurnStats> out;
  const std::regex re(R"(prompt (\d+) tok \((\d+) reused\).*generation (\d+) tok)");
  for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back({std::stol((*it)[1]), std::stol((*it)[2]), std::stol((*it)[3])});
  return out;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < s.size()) {
    const size_t nl = s.find('\n', at);
    out.push_back(s.substr(at, nl - at));
    at = nl == std::string::npos ? s.size() : nl + 1;
  }
  return out;
}

TEST(Chat, ThreeTurnsThroughAPipeReuseTheCache) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const std::string dir = temp_dir();
  const CmdResult r = run_slm("chat --model " + qwen() + " --temp 0 -n 6 --verbose-prompt -t 2",
                              "Hello\nHow are you?\nEt le dimanche ?\n/save " + dir + "/conv.json\n/reset\nHello\n");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto prompts = prompts_in(r.err);
  ASSERT_EQ(prompts.size(), 4u) << r.err;
  const auto answers = lines(r.out);
  ASSERT_GE(answers.size(), 4u) << r.out;
  // Turn 1 is exactly what the Qwen2.5 template renders.
  EXPECT_EQ(prompts[0], std::string(kQwenSystem) + "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  // Turn 2 carries turn 1 and its answer.
  EXPECT_EQ(prompts[1], prompts[0] + answers[0] + "<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(prompts[2].rfind(prompts[1], 0), 0u);
  // After /reset the conversation starts again.
  EXPECT_EQ(prompts[3], prompts[0]);
  EXPECT_EQ(answers[3], answers[0]);

  const auto st = stats_in(r.err);
  ASSERT_EQ(st.size(), 4u) << r.err;
  EXPECT_EQ(st[0].reused, 0);
  // Only the new turn is processed: everything of turn 1 that the cache holds is reused.
  EXPECT_GE(st[1].reused, st[0].prompt) << r.err;
  EXPECT_GE(st[2].reused, st[1].prompt) << r.err;
  EXPECT_LT(st[2].prompt - st[2].reused, 30) << r.err;
  EXPECT_EQ(st[3].reused, 0) << "reset must clear the cache";

  const auto saved = nlohmann::json::parse(slurp(dir + "/conv.json"));
  ASSERT_EQ(saved.size(), 6u);
  EXPECT_EQ(saved[4]["content"], "Et le dimanche ?");
  EXPECT_EQ(saved[5]["role"], "assistant");
}

TEST(Chat, StopStringAndLoad) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  const CmdResult first = run_slm("chat --model " + qwen() + " --temp 0 -n 8 --no-stats", "Hello\n");
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string answer = lines(first.out).at(0);
  ASSERT_GE(answer.size(), 4u) << "greedy answer too short to test a stop string";
  const std::string stop = answer.substr(2, 2);
  const CmdResult stopped = run_slm("chat --model " + qwen() + " --temp 0 -n 8 --no-stats --stop " + sh_quote(stop), "Hello\n");
  ASSERT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_EQ(lines(stopped.out).at(0), answer.substr(0, answer.find(stop)));
  // Bad commands and files are reported and the chat goes on.
  const CmdResult bad = run_slm("chat --model " + qwen() + " --temp 0 -n 2 --no-stats", "/load /nonexistent.json\nHello\n");
  ASSERT_EQ(bad.code, 0) << bad.err;
  EXPECT_NE(bad.err.find("/nonexistent.json: cannot open"), std::string::npos) << bad.err;
  EXPECT_EQ(lines(bad.out).size(), 1u);
}

// A conversation longer than the context drops its oldest turns (the system
// prompt stays), says so once, and every message still gets an answer.
TEST(Chat, OldestTurnsGoWhenTheContextIsFull) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  std::string input;
  for (int i = 0; i < 12; ++i) input += "Tell me about the number " + std::to_string(i) + " please\n";
  const std::string saved = temp_dir() + "/overflow.json";
  input += "/save " + saved + "\n";
  const CmdResult r = run_slm("chat --model " + qwen() + " --temp 0 -n 6 -c 96 --no-stats --system " +
                                  sh_quote("Be brief."),
                              input);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out).size(), 12u) << r.out << r.err;
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.err;
  const std::string note = "dropped the";
  const size_t at = r.err.find(note);
  ASSERT_NE(at, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(note, at + 1), std::string::npos) << "said more than once:\n" << r.err;
  const auto j = nlohmann::json::parse(slurp(saved));
  ASSERT_GE(j.size(), 3u);
  EXPECT_EQ(j[0]["role"], "system");
  EXPECT_EQ(j[1]["role"], "user");
  EXPECT_LT(j.size(), 25u);  // 1 + 2 x 12 were it all kept
  EXPECT_EQ(j[j.size() - 2]["content"], "Tell me about the number 11 please");
}

TEST(Chat, NoTemplateIsAnError) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const CmdResult r = run_slm("chat --model " + sh_quote(fixture("models/stories260K.gguf")), "Hi\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no chat template"), std::string::npos) << r.err;
}

// The interactive path: a real terminal (tmux), line editing, Ctrl-C stopping
// an answer without leaving, Ctrl-D leaving.
class Tmux {
 public:
  explicit Tmux(const std::string& cmd) : name_("slmtest" + std::to_string(getpid())) {
    std::system(("tmux kill-session -t " + name_ + " 2>/dev/null").c_str());
    ok_ = std::system(("tmux new-session -d -s " + name_ + " -x 200 -y 60 " + sh_quote(cmd)).c_str()) == 0;
  }
  ~Tmux() { std::system(("tmux kill-session -t " + name_ + " 2>/dev/null").c_str()); }
  bool ok() const { return ok_; }
  void keys(const std::string& k) { std::system(("tmux send-keys -t " + name_ + " " + k).c_str()); }
  std::string screen() {
    const std::string f = temp_dir() + "/pane";
    std::system(("tmux capture-pane -p -S -200 -t " + name_ + " > " + f + " 2>/dev/null").c_str());
    return slurp(f);
  }
  bool alive() { return std::system(("tmux has-session -t " + name_ + " 2>/dev/null").c_str()) == 0; }
  // The session ends when slm exits (it is exec'd as the pane's process).
  bool wait_gone(int seconds = 30) {
    for (int i = 0; i < seconds * 10 && alive(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return !alive();
  }
  // Waits until the screen shows text count times (bounded). The prompt "> "
  // is matched as a line starting with ">" since tmux trims trailing blanks.
  bool wait_for(const std::string& text, size_t count = 1, int seconds = 60) {
    for (int i = 0; i < seconds * 10; ++i) {
      std::string s(1, '\n');  // so a match at the top also follows a newline
      s += screen();
      const std::string needle = text == "> " ? "\n>" : text;
      size_t n = 0;
      for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
      if (n >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string name_;
  bool ok_ = false;
};

TEST(Chat, InteractiveTerminal) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  if (std::system("command -v tmux >/dev/null") != 0) GTEST_SKIP() << "tmux is not installed";
  const std::string log = temp_dir() + "/chat.err";
  // End-of-text ids banned so an answer runs until Ctrl-C.
  Tmux t("sh -c " + sh_quote("exec " + std::string(SLM_BIN) + " chat --model " + qwen() +
                            " --temp 0 -t 1 -c 32768 --logit-bias 151645=-inf --logit-bias 151643=-inf -n 3 2>" + log));
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t.wait_for("> ")) << t.screen();
  for (const char* msg : {"Hello", "Again", "Third"}) {
    t.keys(std::string("'") + msg + "' Enter");
  }
  ASSERT_TRUE(t.wait_for("> ", 4)) << t.screen();
  EXPECT_EQ(stats_in(slurp(log)).size(), 3u) << slurp(log);
  t.keys("'/reset' Enter");
  ASSERT_TRUE(t.wait_for("> ", 5)) << t.screen();
  EXPECT_NE(slurp(log).find("[conversation reset]"), std::string::npos);
  // The banner names the model, its context and where the template came from.
  const std::string banner = slurp(log).substr(0, slurp(log).find('\n'));
  EXPECT_NE(banner.find("slm chat: "), std::string::npos) << banner;
  EXPECT_NE(banner.find("(qwen2, "), std::string::npos) << banner;
  EXPECT_NE(banner.find("context 32768 tokens"), std::string::npos) << banner;
  EXPECT_NE(banner.find("template: the model file's"), std::string::npos) << banner;
  t.keys("C-d");
  EXPECT_TRUE(t.wait_gone()) << t.screen();
}

TEST(Chat, CtrlCStopsTheAnswerNotTheChat) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  if (std::system("command -v tmux >/dev/null") != 0) GTEST_SKIP() << "tmux is not installed";
  const std::string log = temp_dir() + "/chat2.err";
  Tmux t("sh -c " + sh_quote("exec " + std::string(SLM_BIN) + " chat --model " + qwen() +
                            " --temp 0 -t 1 -c 32768 --logit-bias 151645=-inf --logit-bias 151643=-inf 2>" + log));
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t.wait_for("> ")) << t.screen();
  t.keys("'Tell me a long story' Enter");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  t.keys("C-c");
  ASSERT_TRUE(t.wait_for("> ", 2, 30)) << t.screen();
  EXPECT_NE(slurp(log).find("[stopped]"), std::string::npos) << slurp(log);
  EXPECT_TRUE(t.alive());
  t.keys("'/exit' Enter");
  EXPECT_TRUE(t.wait_gone()) << t.screen();
}

// `slm run M` with no prompt on a terminal is the chat (as `ollama run`);
// from a pipe it still reads the prompt from stdin (test_run covers that).
TEST(Chat, RunWithoutAPromptOnATerminalChats) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  if (std::system("command -v tmux >/dev/null") != 0) GTEST_SKIP() << "tmux is not installed";
  const std::string log = temp_dir() + "/run-chat.err";
  Tmux t("sh -c " + sh_quote("exec " + std::string(SLM_BIN) + " run " + qwen() + " --temp 0 -t 1 -n 3 2>" + log));
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t.wait_for("> ")) << t.screen();
  t.keys("'Hello' Enter");
  ASSERT_TRUE(t.wait_for("> ", 2)) << t.screen();
  EXPECT_EQ(stats_in(slurp(log)).size(), 1u) << slurp(log);
  t.keys("C-d");
  EXPECT_TRUE(t.wait_gone()) << t.screen();
}

// Waits (bounded) until the file holds text.
bool wait_for_file(const std::string& path, const std::string& text, int seconds = 60) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (slurp(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Ctrl-C at the idle prompt throws the typed line away and keeps the chat
// (it used to end the program and lose the conversation).
TEST(Chat, CtrlCAtThePromptClearsTheLineAndKeepsTheChat) {
  SLM_REQUIRE_FIXTURE("models/tiny-qwen2.gguf");
  if (std::system("command -v tmux >/dev/null") != 0) GTEST_SKIP() << "tmux is not installed";
  const std::string log = temp_dir() + "/chat3.err";
  Tmux t("sh -c " + sh_quote("exec " + std::string(SLM_BIN) + " chat --model " + qwen() +
                            " --temp 0 -t 1 -n 2 --verbose-prompt 2>" + log));
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t.wait_for("> ")) << t.screen();
  t.keys("'Hello'");
  t.keys("Enter");
  ASSERT_TRUE(wait_for_file(log, "generation")) << slurp(log);
  ASSERT_TRUE(t.wait_for("> ", 2)) << t.screen();
  t.keys("'half a line'");
  ASSERT_TRUE(t.wait_for("half a line")) << t.screen();
  t.keys("C-c");
  ASSERT_TRUE(wait_for_file(log, "/exit or press Ctrl-D")) << slurp(log);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(t.alive()) << "Ctrl-C at the prompt ended the chat\n" << slurp(log);
  t.keys("'Again' Enter");
  ASSERT_TRUE(t.wait_for("> ", 3)) << t.screen();
  ASSERT_TRUE(wait_for_file(log, "user\nAgain<|im_end|>")) << slurp(log);
  const auto prompts = prompts_in(slurp(log));
  ASSERT_EQ(prompts.size(), 2u) << slurp(log);
  // The conversation went on: turn 2 carries turn 1, and the cleared line is gone.
  EXPECT_NE(prompts[1].find("user\nHello<|im_end|>"), std::string::npos) << prompts[1];
  EXPECT_EQ(prompts[1].find("half a line"), std::string::npos) << prompts[1];
  t.keys("C-d");
  EXPECT_TRUE(t.wait_gone()) << t.screen();
}

}  // namespace
}  // namespace slm::test
