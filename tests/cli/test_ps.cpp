// slm ps against a real server (started in this process): the table and the
// JSON name what the server holds, busy slots show while an answer runs, and
// a missing key or a missing server is one clear error.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "base/format.h"
#include "cli/run_cmd.h"
#include "common/fixtures.h"
#include "server/lora_server_fixture.h"
#include "server/server.h"

namespace slm::test {
namespace {

using Json = nlohmann::json;

TEST(Ps, ShowsWhatTheServerHolds) {
  SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
  const std::string path = fixture("models/stories260K.gguf");
  server::ServerOptions o;
  o.port = 0;
  o.api_key = "ps-key";
  server::Server srv(o, false);
  const int port = srv.start();
  const std::string url = "http://127.0.0.1:" + std::to_string(port);

  // Still loading: ps says so.
  CmdResult r = run_slm("ps " + url + " --api-key ps-key", "", 20);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("loading"), std::string::npos) << r.out;

  engine::SchedulerOptions so;
  so.n_slots = 2;
  so.n_ctx = 1 << 14;  // long enough that an answer is still running when ps asks
  so.allow_beyond_train_ctx = true;
  so.kv_type = DType::F16;
  // One LoRA adapter, served as "tuned" at scale 0.5.
  const std::string adapter = temp_dir() + "/tuned.gguf";
  server::test_lora::write_adapter(adapter, *gguf::File::open(path), 7, 4);
  server::BackendOptions extra;
  extra.adapters.push_back(server::parse_adapter_spec("tuned=" + adapter + ":0.5"));
  auto backend = server::load_backend(path, "stories", so, &srv.metrics(), extra);
  const int64_t kv_bytes = backend->scheduler->kv_bytes();
  srv.set_backend(backend);

  r = run_slm("ps " + url + " --api-key ps-key --json", "", 20);
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = Json::parse(r.out);
  EXPECT_EQ(j["ready"], true);
  EXPECT_EQ(j["model"]["id"], "stories");
  EXPECT_EQ(j["model"]["path"], path);
  EXPECT_EQ(j["model"]["architecture"], "llama");
  EXPECT_EQ(j["model"]["file_bytes"].get<uint64_t>(), std::filesystem::file_size(path));
  EXPECT_EQ(j["slots"]["total"], 2);
  EXPECT_EQ(j["slots"]["busy"], 0);
  EXPECT_EQ(j["n_ctx_per_slot"], 1 << 14);
  EXPECT_EQ(j["queue"], 0);
  EXPECT_EQ(j["kv_cache"]["bytes"].get<int64_t>(), kv_bytes);
  EXPECT_EQ(j["kv_cache"]["type"], "F16");
  ASSERT_EQ(j["adapters"].size(), 1u) << r.out;
  EXPECT_EQ(j["adapters"][0]["name"], "tuned");
  EXPECT_EQ(j["adapters"][0]["path"], adapter);
  EXPECT_EQ(j["adapters"][0]["scale"], 0.5);
  EXPECT_EQ(j["adapters"][0]["rank"], 4);
  EXPECT_GE(j["uptime_s"].get<double>(), 0.0);

  // The table: a header and one row with the same values.
  r = run_slm("ps " + url + " --api-key ps-key", "", 20);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("MODEL ", 0), 0u) << r.out;
  for (const std::string& cell : {std::string("stories"), std::string("16384"), std::string("0/2"),
                                  human_bytes(static_cast<double>(kv_bytes)) + " F16", path})
    EXPECT_NE(r.out.find(cell), std::string::npos) << cell << "\n" << r.out;
  // The adapters' table: a header and its row.
  EXPECT_TRUE(std::regex_search(
      r.out,
      std::regex("\nADAPTER +SCALE +RANK +PATH\ntuned +0\\.5 +4 +" +
                 std::regex_replace(adapter, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)"))))
      << r.out;

  // While an answer runs, one slot is busy.
  std::atomic<bool> streaming{false};
  std::thread client([&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = R"({"prompt":"Once","ignore_eos":true,"max_tokens":16000,"stream":true})";
    req.set_header("Content-Type", "application/json");
    req.set_header("Authorization", "Bearer ps-key");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      streaming.store(true);
      return true;
    };
    c.send(req);
  });
  while (!streaming.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  r = run_slm("ps " + url + " --api-key ps-key --json", "", 20);
  srv.stop();
  client.join();
  srv.wait();
  ASSERT_EQ(r.code, 0) << r.err;
  j = Json::parse(r.out);
  EXPECT_EQ(j["slots"]["busy"], 1) << r.out;
  EXPECT_GT(j["kv_cache"]["tokens_active"].get<int64_t>(), 0) << r.out;
}

TEST(Ps, NeedsTheKeyTheServerNeeds) {
  server::ServerOptions o;
  o.port = 0;
  o.api_key = "ps-key";
  server::Server srv(o, false);
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.start());
  CmdResult r = run_slm("ps " + url, "", 20);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("needs an API key: give it with --api-key K"), std::string::npos) << r.err;
  r = run_slm("ps " + url + " --api-key wrong", "", 20);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("this one is wrong"), std::string::npos) << r.err;
  srv.stop();
  srv.wait();
}

TEST(Ps, NoServerIsOneClearError) {
  // Port 1 on loopback: nothing listens there in a test machine.
  const CmdResult r = run_slm("ps http://127.0.0.1:1", "", 20);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no slm server answers at http://127.0.0.1:1"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace slm::test
