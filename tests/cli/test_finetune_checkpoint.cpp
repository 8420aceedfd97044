// slm finetune and slm train checkpoints end to end on stories260K (and its
// tokenizer): N steps straight equal k steps + checkpoint + --resume +
// (N - k) steps, loss for loss (exact float equality) and byte for byte in
// the written file, for LoRA SFT, DPO, --full and a model from scratch; a
// resume with another setting, model or a damaged file is refused with one
// clear error; a real SIGINT writes a checkpoint that resumes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/run_cmd.h"
#include "common/fixtures.h"

namespace slm::test {
namespace {

std::string sft_data() {
  std::string out;
  for (int i = 0; i < 32; ++i)
    out +=
        nlohmann::json({{"prompt", "Lily had a dog. Day " + std::to_string(i) + ", it was named"},
                        {"completion", " Biscuit."}})
            .dump() +
        "\n";
  return out;
}

std::string dpo_data() {
  std::string out;
  for (const char* n : {"Lily", "Tom", "Ben", "Mia"})
    for (const char* p : {"park", "garden", "lake", "house"})
      out += nlohmann::json(
                 {{"prompt", std::string("One day, ") + n + " went to the " + p + " and saw a"},
                  {"chosen", " dog."},
                  {"rejected", " cat."}})
                 .dump() +
             "\n";
  return out;
}

// step -> loss of the JSON lines of a run.
std::vector<std::pair<int, double>> losses(const std::string& out) {
  std::vector<std::pair<int, double>> r;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    r.emplace_back(j["step"].get<int>(), j["loss"].get<double>());
  }
  return r;
}

// A small corpus for slm train: sentences of one pattern (an LCG from seed).
std::string train_corpus(uint64_t seed, int n) {
  const char* names[] = {"Lily", "Tom", "Ben", "Mia"};
  const char* things[] = {"ball", "kite", "cake", "boat", "book"};
  std::string out;
  for (int i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    out += std::string(names[(seed >> 33) % 4]) + " has a " + things[(seed >> 40) % 5] +
           ". It is fun.\n";
  }
  return out;
}

std::string stories() {
  return sh_quote(fixture("models/stories260K.gguf"));
}

// The run `head --data F tail` (F: data_text in a file named data_name),
// head and tail without --steps, -t, --json, -o and the checkpoint options.
void expect_resume_is_exact(const std::string& head, const std::string& data_name,
                            const std::string& data_text, const std::string& tail, int total,
                            int k) {
  ASSERT_GE(2 * k, total) << "the checkpoint at step 2k would replace step k's";
  const std::string dir = temp_dir();
  const std::string a = dir + "/a.gguf", b = dir + "/b.gguf", ckpt = dir + "/run.ckpt";
  const std::string common = head + " --data " + write_file(dir, data_name, data_text) + " " +
                             tail + " --steps " + std::to_string(total) +
                             " -t 2 --json --checkpoint " + ckpt;
  const CmdResult straight =
      run_slm(common + " -o " + a + " --checkpoint-every " + std::to_string(k));
  ASSERT_EQ(straight.code, 0) << straight.err;
  ASSERT_TRUE(std::filesystem::exists(ckpt)) << straight.err;
  const CmdResult resumed = run_slm(common + " -o " + b + " --resume " + ckpt);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from " + ckpt + " at step " + std::to_string(k)),
            std::string::npos)
      << resumed.err;
  const auto full = losses(straight.out), rest = losses(resumed.out);
  ASSERT_EQ(full.size(), static_cast<size_t>(total));
  ASSERT_EQ(rest.size(), static_cast<size_t>(total - k));
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].first, k + 1 + static_cast<int>(i));
    EXPECT_EQ(rest[i].second, full[static_cast<size_t>(k) + i].second) << "step " << rest[i].first;
  }
  EXPECT_NE(full[0].second, full.back().second);  // the run did train
  const std::string bytes_a = slurp(a), bytes_b = slurp(b);
  EXPECT_GT(bytes_a.size(), 1000u);
  EXPECT_TRUE(bytes_a == bytes_b) << "the written files differ";
  std::filesystem::remove_all(dir);
}

TEST(CliFinetuneCheckpoint, SftResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_resume_is_exact("finetune --model " + stories(), "d.jsonl", sft_data(),
                         "--batch-tokens 64 --lr 2e-3 --warmup 2 --weight-decay 0.01 --seed 3", 9,
                         5);
}

TEST(CliFinetuneCheckpoint, DpoResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_resume_is_exact("finetune --model " + stories(), "p.jsonl", dpo_data(),
                         "--method dpo --batch-tokens 64 --lr 1e-3 --seed 2", 7, 4);
}

TEST(CliFinetuneCheckpoint, FullResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_resume_is_exact("finetune --full --model " + stories(), "d.jsonl", sft_data(),
                         "--batch-tokens 64 --lr 1e-3 --warmup 2 --weight-decay 0.01 --seed 3", 7,
                         4);
}

// A mixture of experts with its expert stacks adapted: the per-expert pairs
// and their moments round-trip through the checkpoint.
TEST(CliFinetuneCheckpoint, MoeExpertResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  expect_resume_is_exact("finetune --model " + sh_quote(fixture("models/tiny-moe.gguf")), "d.jsonl",
                         sft_data(),
                         "--batch-tokens 64 --lr 2e-3 --lora-rank 4 --lora-targets q,gate,up,down "
                         "--seed 3",
                         7, 4);
}

// --full on a mixture of experts: the routers, the 3-d expert stacks and
// their moments round-trip through the checkpoint too.
TEST(CliFinetuneCheckpoint, FullMoeResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  expect_resume_is_exact("finetune --full --model " + sh_quote(fixture("models/tiny-moe.gguf")),
                         "d.jsonl", sft_data(), "--batch-tokens 64 --lr 1e-3 --seed 3", 7, 4);
}

// --full DPO: the reference log-probabilities come from the base, computed
// before the checkpoint's weights are loaded (else the resumed curve moves).
TEST(CliFinetuneCheckpoint, FullDpoResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_resume_is_exact("finetune --full --model " + stories(), "p.jsonl", dpo_data(),
                         "--method dpo --batch-tokens 64 --lr 1e-3 --seed 2", 7, 4);
}

// slm train of the tiny shape with stories260K's tokenizer, up to --data.
std::string train_head() {
  return "train --shape tiny --tokenizer-from " + stories() + " -c 32";
}
const char* const kTrainTail =
    "--batch-tokens 64 --lr 3e-3 --warmup 2 --weight-decay 0.01 --seed 5";

// train_corpus(7, 20) is about 11 windows of 32 tokens, 2 a step: 6 steps an
// epoch, so a resume at step 5 of 9 crosses an epoch boundary.
TEST(CliTrainCheckpoint, ResumeContinuesTheSameCurve) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_resume_is_exact(train_head(), "c.txt", train_corpus(7, 20), kTrainTail, 9, 5);
}

TEST(CliTrainCheckpoint, ResumeRefusesAnotherRun) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string dir = temp_dir();
  const std::string corpus = write_file(dir, "c.txt", train_corpus(7, 40));
  const std::string ckpt = dir + "/c.ckpt", out = dir + "/m.gguf";
  const std::string common =
      " --tokenizer-from " + stories() + " --data " + corpus + " --steps 4 -c 32 -t 2 -o " + out;
  CmdResult r =
      run_slm("train --shape tiny" + common + " --checkpoint-every 2 --checkpoint " + ckpt);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  std::filesystem::remove(out);
  r = run_slm("train --shape stories260k" + common + " --resume " + ckpt);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(ckpt + ": setting 'n-ff' differs: the checkpoint has 192, this run 172"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("setting 'n-layer' differs: the checkpoint has 2, this run 5"),
            std::string::npos)
      << r.err;
  r = run_slm("train --shape tiny --n-head 2" + common + " --resume " + ckpt);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("setting 'n-head' differs: the checkpoint has 4, this run 2"),
            std::string::npos)
      << r.err;
  r = run_slm("train --shape tiny --seed 9" + common + " --resume " + ckpt);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("setting 'seed' differs: the checkpoint has 0, this run 9"),
            std::string::npos)
      << r.err;
  const std::string other = write_file(dir, "o.txt", train_corpus(8, 40));
  r = run_slm("train --shape tiny --tokenizer-from " + stories() + " --data " + other +
              " --steps 4 -c 32 -t 2 -o " + out + " --resume " + ckpt);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("setting 'data' differs"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));  // nothing trained, nothing written
  std::filesystem::remove_all(dir);
}

TEST(CliFinetuneCheckpoint, ResumeRefusesAnotherRun) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
  const std::string model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const std::string data = write_file(dir, "d.jsonl", sft_data());
  const std::string ckpt = dir + "/c.ckpt", out = dir + "/a.gguf";
  const std::string common = " --data " + data + " --steps 4 --batch-tokens 64 -t 2 -o " + out;
  CmdResult r =
      run_slm("finetune --model " + model + common + " --checkpoint-every 2 --checkpoint " + ckpt);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_slm("finetune --model " + model + common + " --resume " + ckpt + " --lora-rank 8");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(ckpt + ": setting 'lora-rank' differs: the checkpoint has 16, this run 8"),
            std::string::npos)
      << r.err;
  r = run_slm("finetune --model " + model + common + " --resume " + ckpt + " --seed 5");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("setting 'seed' differs"), std::string::npos) << r.err;
  const std::string other_data =
      write_file(dir, "e.jsonl", sft_data() + "{\"text\": \"one more\"}\n");
  r = run_slm("finetune --model " + model + " --data " + other_data +
              " --steps 4 --batch-tokens 64 -t 2 -o " + out + " --resume " + ckpt);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("setting 'data' differs"), std::string::npos) << r.err;
  r = run_slm("finetune --model " + sh_quote(fixture("models/tiny-llama.gguf")) + common +
              " --resume " + ckpt);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("another base model"), std::string::npos) << r.err;
  r = run_slm("finetune --model " + model + common + " --resume " +
              out);  // an adapter, not a checkpoint
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not a training checkpoint"), std::string::npos) << r.err;
  std::string bytes = slurp(ckpt);
  bytes[bytes.size() - 9] ^= 0x40;
  const std::string bad = write_file(dir, "bad.ckpt", bytes);
  r = run_slm("finetune --model " + model + common + " --resume " + bad);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(bad + ": checksum mismatch"), std::string::npos) << r.err;
  const std::string cut = write_file(dir, "cut.ckpt", slurp(ckpt).substr(0, 300));
  r = run_slm("finetune --model " + model + common + " --resume " + cut);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(cut + ": "), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

struct Interrupted {
  int code = -1;
  std::string first_line, err;
};

// Starts slm with args (no shell in between, so the signal reaches slm),
// waits for its first JSON line on stdout, sends SIGINT and waits for it.
Interrupted run_and_interrupt(const std::string& args, const std::string& err_path) {
  int fds[2];
  Interrupted r;
  if (pipe(fds) != 0) return r;
  const std::string cmd = "exec " + std::string(SLM_BIN) + " " + args + " 2>" + err_path;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  FILE* out = fdopen(fds[0], "r");
  char buf[4096];
  while (std::fgets(buf, sizeof buf, out) != nullptr)
    if (buf[0] == '{') {
      r.first_line = buf;
      break;
    }
  kill(pid, SIGINT);
  while (std::fgets(buf, sizeof buf, out) != nullptr) {
  }
  std::fclose(out);
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = slurp(err_path);
  return r;
}

// Runs `head --data F tail` (F: data_text in a file) for far more steps
// than run before the signal lands, interrupts it, checks the checkpoint and
// its message, then resumes from it (and interrupts that too): the resumed
// run's first step is the one after the checkpoint's.
void expect_sigint_resumes(const std::string& command, const std::string& head,
                           const std::string& data_name, const std::string& data_text,
                           const std::string& tail) {
  const std::string dir = temp_dir();
  const std::string out = dir + "/out.gguf", ckpt = out + ".ckpt";
  const std::string args = head + " --data " + write_file(dir, data_name, data_text) + " " + tail +
                           " --steps 200000 -t 2 --json -o " + out;
  const Interrupted first = run_and_interrupt(args, dir + "/err1");
  ASSERT_EQ(first.code, 130) << first.err;
  ASSERT_FALSE(first.first_line.empty()) << first.err;
  EXPECT_NE(first.err.find("interrupted: wrote checkpoint " + ckpt + " at step "),
            std::string::npos)
      << first.err;
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  EXPECT_FALSE(std::filesystem::exists(ckpt + ".tmp"));
  EXPECT_FALSE(std::filesystem::exists(out));  // nothing half-trained written
  const int stopped = std::stoi(first.err.substr(first.err.find(" at step ") + 9));
  EXPECT_GE(stopped, 1);

  const Interrupted second = run_and_interrupt(args + " --resume " + ckpt, dir + "/err2");
  ASSERT_EQ(second.code, 130) << second.err;
  EXPECT_NE(second.err.find(command + ": resumed from " + ckpt + " at step " +
                            std::to_string(stopped) + "/200000"),
            std::string::npos)
      << second.err;
  ASSERT_FALSE(second.first_line.empty()) << second.err;
  EXPECT_EQ(nlohmann::json::parse(second.first_line)["step"].get<int>(), stopped + 1);
  std::filesystem::remove_all(dir);
}

TEST(CliFinetuneCheckpoint, SigintWritesACheckpointThatResumes) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_sigint_resumes("finetune", "finetune --model " + stories(), "d.jsonl", sft_data(),
                        "--batch-tokens 64");
}

TEST(CliTrainCheckpoint, SigintWritesACheckpointThatResumes) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  expect_sigint_resumes("train", train_head(), "c.txt", train_corpus(7, 40), kTrainTail);
}

}  // namespace
}  // namespace slm::test
