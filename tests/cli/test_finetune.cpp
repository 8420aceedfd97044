// slm finetune end to end: LoRA SFT on stories260K teaches it a fact it does
// not know (a held-out phrasing continues with it under `slm run --lora`, and
// the eval loss falls); DPO on a synthetic preference set makes held-out
// pairs prefer the chosen property; plus the refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

// 64 phrasings of one fact.
std::string fact_data() {
  const char* pre[] = {
      "",           "Once upon a time, ", "One day, ",     "Every morning, ", "In a small town, ",
      "Long ago, ", "At the park, ",      "After school, "};
  const char* subj[] = {"Lily had a dog named",          "Lily had a little dog named",
                        "Lily's dog was named",          "Lily loved her dog named",
                        "The girl Lily had a dog named", "Lily played with her dog named",
                        "Lily had a happy dog named",    "Lily walked her dog named"};
  std::string out;
  for (const char* p : pre)
    for (const char* s : subj)
      out += nlohmann::json({{"prompt", std::string(p) + s}, {"completion", " Biscuit."}}).dump() +
             "\n";
  return out;
}

// The objects of --json output, one a line.
std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::istringstream lines(out);
  std::vector<nlohmann::json> js;
  for (std::string line; std::getline(lines, line);) js.push_back(nlohmann::json::parse(line));
  return js;
}

TEST(CliFinetune, SftTeachesAFact) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const std::string train = write_file(dir, "train.jsonl", fact_data());
  const std::string eval =
      write_file(dir, "eval.jsonl",
                 "{\"prompt\": \"Lily had a big dog named\", \"completion\": \" Biscuit.\"}\n"
                 "{\"prompt\": \"Once upon a time, there was a girl. Lily had a funny dog named\", "
                 "\"completion\": \" Biscuit.\"}\n");
  const std::string adapter = dir + "/fact.gguf";
  const std::string held_out = " -p 'Lily had a big dog named' --temp 0 -n 8";
  const CmdResult base = run_slm("run " + model + held_out);
  ASSERT_EQ(base.code, 0) << base.err;
  EXPECT_EQ(base.out.find("Biscuit"), std::string::npos) << base.out;

  const CmdResult r =
      run_slm("finetune --model " + model + " --data " + train + " --eval-data " + eval + " -o " +
              adapter + " --lr 5e-3 --epochs 8 --batch-tokens 256 --seed 1 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  double eval_start = -1, eval_end = -1, loss_first = -1, loss_last = -1;
  int steps = 0;
  for (const nlohmann::json& j : json_lines(r.out)) {
    ASSERT_TRUE(j.contains("step") && j.contains("loss")) << j.dump();
    ++steps;
    if (j.contains("eval_loss_start")) eval_start = j["eval_loss_start"];
    if (j.contains("eval_loss")) eval_end = j["eval_loss"];
    if (loss_first < 0) loss_first = j["loss"];
    loss_last = j["loss"];
  }
  EXPECT_GT(steps, 10);
  EXPECT_GT(eval_start, 0);
  EXPECT_LT(eval_end, eval_start / 3) << r.out;
  EXPECT_LT(loss_last, loss_first / 3) << r.out;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ETA"), std::string::npos) << r.err;

  const CmdResult taught = run_slm("run " + model + " --lora " + sh_quote(adapter) + held_out);
  ASSERT_EQ(taught.code, 0) << taught.err;
  EXPECT_NE(taught.out.find("Biscuit"), std::string::npos) << taught.out;
  std::filesystem::remove_all(dir);
}

// --full: every weight of stories260K (F32) is trained; the whole model it
// writes continues the held-out prompt with the fact under plain `slm run`,
// the eval loss falls, and the file keeps the base's metadata and tensor
// types (--out-type f16 halves the matrices).
TEST(CliFinetune, FullSftTeachesAFact) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const std::string train = write_file(dir, "train.jsonl", fact_data());
  const std::string eval =
      write_file(dir, "eval.jsonl",
                 "{\"prompt\": \"Lily had a big dog named\", \"completion\": \" Biscuit.\"}\n");
  const std::string out = dir + "/full.gguf";
  const std::string held_out = " -p 'Lily had a big dog named' --temp 0 -n 8";
  const CmdResult base = run_slm("run " + model + held_out);
  ASSERT_EQ(base.code, 0) << base.err;
  EXPECT_EQ(base.out.find("Biscuit"), std::string::npos) << base.out;

  const CmdResult r =
      run_slm("finetune --full --model " + model + " --data " + train + " --eval-data " + eval +
              " -o " + out + " --lr 1e-3 --epochs 8 --batch-tokens 256 --seed 1 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("every weight"), std::string::npos) << r.err;
  double eval_start = -1, eval_end = -1;
  for (const nlohmann::json& j : json_lines(r.out)) {
    if (j.contains("eval_loss_start")) eval_start = j["eval_loss_start"];
    if (j.contains("eval_loss")) eval_end = j["eval_loss"];
  }
  EXPECT_GT(eval_start, 0);
  EXPECT_LT(eval_end, eval_start / 3) << r.out;
  const CmdResult taught = run_slm("run " + sh_quote(out) + held_out);
  ASSERT_EQ(taught.code, 0) << taught.err;
  EXPECT_NE(taught.out.find("Biscuit"), std::string::npos) << taught.out;
  // Same size as the base (same tensors, same F32 type, same metadata).
  EXPECT_EQ(std::filesystem::file_size(out),
            std::filesystem::file_size(fixture("models/stories260K.gguf")));

  const std::string half = dir + "/half.gguf";
  const CmdResult h = run_slm("finetune --full --model " + model + " --data " + train + " -o " +
                              half + " --steps 2 --out-type f16 -t 2");
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_LT(std::filesystem::file_size(half), std::filesystem::file_size(out) * 6 / 10);
  const CmdResult ran = run_slm("run " + sh_quote(half) + held_out);
  EXPECT_EQ(ran.code, 0) << ran.err;
  std::filesystem::remove_all(dir);
}

// An F16 base keeps its tensor types (the file has the base's size) and runs.
TEST(CliFinetune, FullKeepsAnF16BaseType) {
  SLM_REQUIRE_FIXTURE("models/small-llama-F16.gguf");
  const std::string base = fixture("models/small-llama-F16.gguf");
  const std::string dir = temp_dir();
  const std::string data = write_file(dir, "d.jsonl", fact_data());
  const std::string out = dir + "/m.gguf";
  const CmdResult r = run_slm("finetune --full --model " + sh_quote(base) + " --data " + data +
                              " -o " + out + " --steps 1 -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::filesystem::file_size(out), std::filesystem::file_size(base));
  const CmdResult ran = run_slm("run " + sh_quote(out) + " -p 'Lily had' --temp 0 -n 4");
  EXPECT_EQ(ran.code, 0) << ran.err;
  std::filesystem::remove_all(dir);
}

TEST(CliFinetune, FullRefusesQuantizedBase) {
  SLM_REQUIRE_FIXTURE("models/small-llama-Q4_K.gguf");
  const std::string dir = temp_dir();
  const std::string data = write_file(dir, "d.jsonl", "{\"text\": \"hello world\"}\n");
  CmdResult r =
      run_slm("finetune --full --model " + sh_quote(fixture("models/small-llama-Q4_K.gguf")) +
              " --data " + data + " -o " + dir + "/m.gguf");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is Q4_K"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("LoRA"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/m.gguf"));
  const std::string prefs =
      write_file(dir, "p.jsonl",
                 "{\"prompt\": \"hello\", \"chosen\": \" world\", \"rejected\": \" there\"}\n");
  r = run_slm("finetune --full --method dpo --model " +
              sh_quote(fixture("models/small-llama-Q4_K.gguf")) + " --data " + prefs + " -o " +
              dir + "/m.gguf");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("is Q4_K"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/m.gguf"));
  r = run_slm("finetune --full --lora-rank 4 --model " +
              sh_quote(fixture("models/small-llama-Q4_K.gguf")) + " --data " + data + " -o " + dir +
              "/m.gguf");
  EXPECT_EQ(r.code, 2) << r.err;
  std::filesystem::remove_all(dir);
}

// A synthetic preference set: a story prompt whose chosen continuation names
// a dog and whose rejected one names a cat, the rest of the pair identical.
// Training and held-out pairs share no name, place, adjective or ending.
std::string preference_data(const std::vector<std::string>& names,
                            const std::vector<std::string>& places,
                            const std::vector<std::string>& adjectives,
                            const std::vector<std::string>& endings) {
  std::string out;
  for (const std::string& n : names)
    for (const std::string& p : places)
      for (const std::string& a : adjectives)
        for (const std::string& e : endings) {
          const std::string end = e == "NAME" ? " It ran to " + n + "." : e;
          out += nlohmann::json(
                     {{"prompt", "One day, " + n + " went to the " + p + ". " + n + " saw a " + a},
                      {"chosen", " dog." + end},
                      {"rejected", " cat." + end}})
                     .dump() +
                 "\n";
        }
  return out;
}

// The DPO tests' data in dir: 2 x 2 x 4 x 4 = 64 training pairs, 2 x 2 x 2 x 2
// = 16 held-out ones.
struct PreferenceFiles {
  std::string train, eval;
};
PreferenceFiles write_preference_files(const std::string& dir) {
  return {write_file(dir, "train.jsonl",
                     preference_data({"Lily", "Tom", "Ben", "Mia"}, {"park", "garden"},
                                     {"big", "little", "happy", "funny"},
                                     {" It was very friendly.", " They played all day.", "NAME",
                                      " The sun was warm."})),
          write_file(dir, "eval.jsonl",
                     preference_data({"Tim", "Lucy"}, {"house", "lake"}, {"small", "soft"},
                                     {" It liked to jump.", " Everyone smiled."}))};
}

// Step 1 is measured before its update, with the policy still the reference
// (the adapter at zero, or the base's own weights): margin 0, KL 0, loss
// log 2 (every pair a tie). Returns its held-out accuracy at the start.
double expect_reference_first_step(const nlohmann::json& first) {
  EXPECT_NEAR(first["loss"].get<double>(), std::log(2.0), 1e-9);
  EXPECT_EQ(first["reward_margin"].get<double>(), 0.0);
  EXPECT_EQ(first["kl"].get<double>(), 0.0);
  EXPECT_TRUE(first.contains("eval_accuracy_start")) << first.dump();
  const double acc_start = first.value("eval_accuracy_start", 1.0);
  EXPECT_LT(acc_start, 0.7);
  return acc_start;
}

TEST(CliFinetune, DpoLearnsAPreference) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const PreferenceFiles data = write_preference_files(dir);
  const std::string adapter = dir + "/dpo.gguf";
  const CmdResult r =
      run_slm("finetune --model " + model + " --method dpo --beta 0.1 --data " + data.train +
              " --eval-data " + data.eval + " -o " + adapter +
              " --lr 1e-3 --epochs 2 --batch-tokens 256 --eval-every 4 --seed 1 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<nlohmann::json> steps = json_lines(r.out);
  ASSERT_GT(steps.size(), 10u) << r.out;
  for (const nlohmann::json& j : steps)
    for (const char* key : {"step", "loss", "reward_margin", "accuracy", "kl"})
      ASSERT_TRUE(j.contains(key) && j[key].is_number()) << key << " in " << j.dump();
  // The adapter starts at zero.
  const nlohmann::json& first = steps.front();
  expect_reference_first_step(first);
  const nlohmann::json& last = steps.back();
  ASSERT_TRUE(last.contains("eval_accuracy") && last.contains("eval_reward_margin") &&
              last.contains("eval_kl"))
      << last.dump();
  EXPECT_GE(last["eval_accuracy"].get<double>(), 0.9) << r.err;
  EXPECT_GT(last["eval_reward_margin"].get<double>(), 1.0) << r.err;
  EXPECT_LT(last["loss"].get<double>(), first["loss"].get<double>() / 3) << r.err;
  EXPECT_TRUE(std::isfinite(last["eval_kl"].get<double>()));
  EXPECT_NE(last["kl"].get<double>(), 0.0);  // the policy moved away from the base
  EXPECT_NE(r.err.find("margin"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("acc"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kl"), std::string::npos) << r.err;

  EXPECT_TRUE(std::filesystem::exists(adapter));
  std::filesystem::remove_all(dir);
}

// --full --method dpo: every weight trained against the base's cached
// log-probabilities; held-out preference accuracy rises as with LoRA, and
// the written model prefers the chosen side by itself.
TEST(CliFinetune, FullDpoLearnsAPreference) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const PreferenceFiles data = write_preference_files(dir);
  const std::string out = dir + "/full-dpo.gguf";
  const std::string common =
      " --method dpo --beta 0.1 --data " + data.train + " --eval-data " + data.eval +
      " --lr 1e-3 --epochs 2 --batch-tokens 256 --eval-every 4 --seed 1 -t 2 --json";
  const CmdResult r = run_slm("finetune --full --model " + model + common + " -o " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("every weight"), std::string::npos) << r.err;
  const std::vector<nlohmann::json> steps = json_lines(r.out);
  ASSERT_GT(steps.size(), 10u) << r.out;
  // Step 1 runs the base itself.
  const nlohmann::json& first = steps.front();
  const double acc_start = expect_reference_first_step(first);
  const nlohmann::json& last = steps.back();
  std::printf("[ full dpo ] eval accuracy %.3f -> %.3f, margin %.3f, kl %.4f\n", acc_start,
              last["eval_accuracy"].get<double>(), last["eval_reward_margin"].get<double>(),
              last["eval_kl"].get<double>());
  EXPECT_GE(last["eval_accuracy"].get<double>(), 0.9) << r.err;
  EXPECT_GT(last["eval_reward_margin"].get<double>(), 1.0) << r.err;
  EXPECT_LT(last["loss"].get<double>(), first["loss"].get<double>() / 3) << r.err;
  EXPECT_NE(last["kl"].get<double>(), 0.0);
  // The written model is a whole model of the base's size, and it runs.
  const CmdResult ran = run_slm("run " + sh_quote(out) + " -p 'One day, Tim saw a' -n 4 --temp 0");
  EXPECT_EQ(ran.code, 0) << ran.err;
  EXPECT_EQ(std::filesystem::file_size(out),
            std::filesystem::file_size(fixture("models/stories260K.gguf")));
  std::filesystem::remove_all(dir);
}

TEST(CliFinetune, RefusesBadDataBeforeTraining) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string model = sh_quote(fixture("models/stories260K.gguf"));
  const std::string dir = temp_dir();
  const std::string bad = write_file(
      dir, "bad.jsonl", "{\"text\": \"a cat\"}\n{\"prompt\": \"x\", \"completion\": 7}\n");
  const std::string out = dir + "/a.gguf";
  CmdResult r = run_slm("finetune --model " + model + " --data " + bad + " -o " + out);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(bad + ":2: field 'completion' must be a string"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));

  const std::string long_text = write_file(
      dir, "long.jsonl", "{\"text\": \"the cat sat on the mat and the dog ran to the log\"}\n");
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " -c 8 --steps 1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(":1: the example is"), std::string::npos) << r.err;
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " -c 8 --steps 1 --truncate");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out));

  // A context beyond the model's training length (128 tokens) is refused,
  // naming the switch that exists on this command, and allowed with it.
  std::filesystem::remove(out);
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " -c 4096 --steps 1");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("-c 4096 exceeds the 128 tokens the model was trained for (pass "
                       "--allow-long-context"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " -c 4096 --steps 1 --allow-long-context");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(out));

  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " --method dpo");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(long_text + ":1: field 'prompt' is missing"), std::string::npos) << r.err;
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " --method rlhf");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out + " --beta 0.1");
  EXPECT_EQ(r.code, 2) << r.err;  // --beta without --method dpo
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " --method dpo --beta 0");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_slm("finetune --model " + model + " --data " + long_text);
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_slm("finetune --model " + model + " --data " + long_text + " -o " + out +
              " --lora-targets q,router");
  EXPECT_EQ(r.code, 2) << r.err;
  std::filesystem::remove_all(dir);
}

// A mixture of experts trains its attention and (gate, up, down) its expert
// stacks: the adapter holds llama.cpp's 3-d expert pairs, runs, and
// `slm logits --lora` on the base equals `slm logits` on `slm merge`'s output.
TEST(CliFinetune, MixtureOfExpertsTrainsExperts) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const std::string model = sh_quote(fixture("models/tiny-moe.gguf"));
  const std::string dir = temp_dir();
  std::string lines;
  for (int i = 0; i < 8; ++i) lines += "{\"text\": \"hello world, the cat sat on the mat\"}\n";
  const std::string data = write_file(dir, "d.jsonl", lines);
  const std::string adapter = dir + "/a.gguf";
  const CmdResult r = run_slm("finetune --model " + model + " --data " + data + " -o " + adapter +
                              " --steps 6 --lr 1e-2 --batch-tokens 32 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("on 14 matrices"), std::string::npos) << r.err;  // 2 x (q k v o + 3 stacks)
  std::vector<double> losses;
  for (const nlohmann::json& j : json_lines(r.out)) losses.push_back(j["loss"].get<double>());
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_LT(losses.back(), losses.front()) << r.out;
  const CmdResult run =
      run_slm("run " + model + " --lora " + sh_quote(adapter) + " -p hello -n 4 --temp 0");
  EXPECT_EQ(run.code, 0) << run.err;

  const std::string merged = dir + "/merged.gguf";
  const CmdResult mg =
      run_slm("merge --model " + model + " --lora " + sh_quote(adapter) + " -o " + merged);
  ASSERT_EQ(mg.code, 0) << mg.err;
  const std::string ids = " --tokens \"1 15043 3186 29892 278 6635 3290 373\" -o ";
  const auto logits = [&](const std::string& args, const std::string& out) {
    const CmdResult lr = run_slm("logits " + args + ids + sh_quote(out));
    EXPECT_EQ(lr.code, 0) << lr.err;
    std::ifstream f(out, std::ios::binary);
    std::vector<float> v(8 * 32000);
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    EXPECT_TRUE(f.good()) << out;
    return v;
  };
  const auto with_lora = logits(model + " --lora " + sh_quote(adapter), dir + "/l.bin");
  const auto from_merged = logits(sh_quote(merged), dir + "/m.bin");
  const auto base = logits(model, dir + "/b.bin");
  double diff = 0, moved = 0, mx = 0;
  for (size_t i = 0; i < with_lora.size(); ++i) {
    mx = std::max(mx, std::fabs(static_cast<double>(with_lora[i])));
    diff = std::max(diff, std::fabs(static_cast<double>(with_lora[i]) - from_merged[i]));
    moved = std::max(moved, std::fabs(static_cast<double>(with_lora[i]) - base[i]));
  }
  EXPECT_LT(diff, 1e-4 * mx);
  EXPECT_GT(moved, 1e-2 * mx);
  std::filesystem::remove_all(dir);
}

// --full on a mixture of experts: every weight (the routers and the 3-d
// expert stacks too) is trained, and the written model keeps each tensor's
// shape and type (the base's F32, or --out-type f16's), loads in `slm run`
// and `slm logits`, and gives the training sentence a lower loss than the
// base does.
TEST(CliFinetune, FullTrainsAMixtureOfExperts) {
  SLM_REQUIRE_FIXTURE("models/tiny-moe.gguf");
  const std::string base = fixture("models/tiny-moe.gguf");
  const std::string model = sh_quote(base);
  const std::string dir = temp_dir();
  std::string lines;
  for (int i = 0; i < 8; ++i) lines += "{\"text\": \"hello world, the cat sat on the mat\"}\n";
  const std::string data = write_file(dir, "d.jsonl", lines);
  const std::string out = dir + "/full.gguf";
  const CmdResult r = run_slm("finetune --full --model " + model + " --data " + data + " -o " +
                              out + " --steps 8 --lr 1e-3 --batch-tokens 32 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("every weight"), std::string::npos) << r.err;
  std::vector<double> losses;
  for (const nlohmann::json& j : json_lines(r.out)) losses.push_back(j["loss"].get<double>());
  ASSERT_EQ(losses.size(), 8u);
  EXPECT_LT(losses.back(), losses.front()) << r.out;
  // Same tensors, shapes and types as the base: the same size, and the
  // stacks still listed as 3-d F32 tensors.
  EXPECT_EQ(std::filesystem::file_size(out), std::filesystem::file_size(base));
  const auto info = [&](const std::string& file) {
    const CmdResult i = run_slm("info " + sh_quote(file));
    EXPECT_EQ(i.code, 0) << i.err;
    std::string flat;  // runs of spaces as one, so that columns compare as words
    for (const char ch : i.out)
      if (ch != ' ' || flat.empty() || flat.back() != ' ') flat.push_back(ch);
    return flat;
  };
  const std::string trained_info = info(out);
  for (const char* t :
       {"blk.0.ffn_gate_exps.weight F32 [32, 64, 4]", "blk.1.ffn_down_exps.weight F32 [64, 32, 4]",
        "blk.1.ffn_gate_inp.weight F32 [32, 4]"})
    EXPECT_NE(trained_info.find(t), std::string::npos) << t << "\n" << trained_info;
  const CmdResult ran = run_slm("run " + sh_quote(out) + " -p hello -n 4 --temp 0");
  EXPECT_EQ(ran.code, 0) << ran.err;

  // The sentence's loss under `slm logits`: BOS and its 9 tokens.
  const std::vector<int> ids = {1, 22172, 3186, 29892, 278, 6635, 3290, 373, 278, 1775};
  std::string id_list;
  for (const int id : ids) {
    if (!id_list.empty()) id_list.push_back(' ');
    id_list.append(std::to_string(id));
  }
  const auto nll = [&](const std::string& file) {
    const std::string bin = dir + "/logits.bin";
    const CmdResult lr =
        run_slm("logits " + sh_quote(file) + " --tokens \"" + id_list + "\" -o " + sh_quote(bin));
    EXPECT_EQ(lr.code, 0) << lr.err;
    const size_t V = 32000;
    std::vector<float> v(ids.size() * V);
    std::ifstream f(bin, std::ios::binary);
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    EXPECT_TRUE(f.good()) << file;
    double sum = 0;
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
      const float* row = &v[t * V];
      const double mx = *std::max_element(row, row + V);
      double z = 0;
      for (size_t k = 0; k < V; ++k) z += std::exp(static_cast<double>(row[k]) - mx);
      sum += mx + std::log(z) - row[static_cast<size_t>(ids[t + 1])];
    }
    return sum / static_cast<double>(ids.size() - 1);
  };
  const double before = nll(base), after = nll(out);
  std::printf("[ full moe ] sentence loss %.3f -> %.3f\n", before, after);
  EXPECT_LT(after, before - 0.1);

  // --out-type f16: the matrices and stacks halve, keeping their shapes.
  const std::string half = dir + "/half.gguf";
  const CmdResult h = run_slm("finetune --full --model " + model + " --data " + data + " -o " +
                              half + " --steps 1 --out-type f16 -t 2");
  ASSERT_EQ(h.code, 0) << h.err;
  const std::string half_info = info(half);
  for (const char* t :
       {"blk.0.ffn_up_exps.weight F16 [32, 64, 4]", "blk.1.ffn_down_exps.weight F16 [64, 32, 4]"})
    EXPECT_NE(half_info.find(t), std::string::npos) << t << "\n" << half_info;
  EXPECT_TRUE(std::isfinite(nll(half)));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace slm::test
