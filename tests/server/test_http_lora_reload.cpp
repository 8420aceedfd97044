// Hot loading under load, in a process of its own so that resident memory
// reflects this test alone: 100 cycles of POST /v1/adapters, a request on
// the adapter, and DELETE while a streamed request on it is still decoding
// (it must run to its end), with other requests running all along. No
// request may fail, and resident memory may not grow by a quarter of what
// the 100 unloaded adapters would hold if they leaked.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "server/lora_server_fixture.h"

namespace slm::server {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using test_lora::HttpLora;
using test_lora::rss_bytes;

// Load, use and unload 100 times while other requests run; one streamed
// request per cycle is decoding on the adapter when it is removed and must
// run to its end.
TEST_F(HttpLora, HotReloadUnderLoadLosesNothingAndLeaksNothing) {
  // 16 connection threads, so the warm-up below has touched every thread's
  // stack and allocator arena before the baseline (the default pool has 144).
  // Rank 128, so that leaked adapters would stand far above the few percent
  // that in-flight requests and allocator arenas make resident memory jitter.
  test_lora::write_adapter(allowed() / "big.gguf", *gguf::File::open(path_), 5, 128);
  httplib::Client& c = start(4, {}, 16);
  std::atomic<bool> stop{false};
  std::atomic<int> background_ok{0}, background_bad{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t)
    load.emplace_back([&, t] {
      httplib::Client own("127.0.0.1", port_);
      for (int i = 0; !stop.load(); ++i) {
        auto r = complete(own, t == 0 ? "" : "a2", {1, 450 + i % 50, 4996}, 8);
        (r && r->status == 200 ? background_ok : background_bad)++;
      }
    });

  const std::string body_load = Json{{"name", "hot"}, {"path", "big.gguf"}}.dump();
  std::vector<size_t> rss;  // after each counted cycle
  int finished_after_delete = 0;
  // Warm-up cycles first: every connection thread's allocator arena and the
  // KV cache pages the slots will touch exist before the baseline is taken.
  constexpr int kWarmup = 30;
  const int kCycles =
      std::getenv("SLM_LORA_CYCLES") ? std::atoi(std::getenv("SLM_LORA_CYCLES")) : 100;
  for (int cycle = -kWarmup; cycle < kCycles; ++cycle) {
    auto r = c.Post("/v1/adapters", body_load, "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
    auto u = complete(c, "hot", {1, 450, cycle + 110}, 3);
    ASSERT_TRUE(u);
    ASSERT_EQ(u->status, 200) << u->body;
    // A longer streamed request on the adapter, removed once it is decoding
    // (its first token has arrived): it must still run to its length.
    std::string stream;
    std::atomic<bool> decoding{false};
    int status = 0;
    std::thread inflight([&] {
      httplib::Client own("127.0.0.1", port_);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.set_header("Content-Type", "application/json");
      req.body = Json{{"model", "hot"},     {"prompt", {1, 450, cycle + 220}},
                      {"max_tokens", 24},   {"temperature", 0},
                      {"ignore_eos", true}, {"stream", true}}
                     .dump();
      req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        stream.append(d, n);
        if (stream.find("\"text\"") != std::string::npos) decoding.store(true);
        return true;
      };
      auto x = own.send(req);
      status = x ? x->status : -1;
      decoding.store(true);
    });
    while (!decoding.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    auto d = c.Delete("/v1/adapters/hot");
    inflight.join();
    ASSERT_TRUE(d);
    ASSERT_EQ(d->status, 200);
    ASSERT_EQ(status, 200) << stream;
    if (stream.find("\"finish_reason\":\"length\"") != std::string::npos &&
        stream.find("data: [DONE]") != std::string::npos && cycle >= 0)
      ++finished_after_delete;
    if (cycle >= 0) rss.push_back(rss_bytes());
    if (cycle >= 0 && cycle % 50 == 0)
      std::printf("cycle %d: %.1f MiB\n", cycle, static_cast<double>(rss.back()) / 1048576.0);
  }
  stop.store(true);
  for (auto& t : load) t.join();
  EXPECT_EQ(finished_after_delete, kCycles);
  EXPECT_GT(background_ok.load(), 0);
  EXPECT_EQ(background_bad.load(), 0);
  // Requests in flight make single samples jitter by a few percent: compare
  // the median of the first ten cycles with that of the last ten. The server
  // holds an adapter's factors in F16 (half the F32 file), so 100 leaked
  // adapters would add 50 files' bytes; a quarter of that is the bound.
  auto median = [](std::vector<size_t> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
    return static_cast<double>(v[v.size() / 2]);
  };
  const double first = median({rss.begin(), rss.begin() + 10}),
               last = median({rss.end() - 10, rss.end()});
  const double adapter_bytes = static_cast<double>(fs::file_size(allowed() / "big.gguf"));
  const double leak_bytes = kCycles / 2.0 * adapter_bytes;
  EXPECT_GT(leak_bytes, 0.5 * first) << "the adapter is too small for this test to see a leak";
  EXPECT_LT(last - first, 0.25 * leak_bytes)
      << "RSS grew from " << first << " to " << last << " bytes over " << kCycles << " cycles";
  std::printf(
      "RSS (median of 10 cycles) after cycles 1-10: %.1f MiB, after 91-100: %.1f MiB (%+.1f%%); "
      "adapter %.2f MiB; %d in-flight requests outlived their adapter\n",
      first / 1048576.0, last / 1048576.0, 100.0 * (last / first - 1), adapter_bytes / 1048576.0,
      finished_after_delete);
}

}  // namespace
}  // namespace slm::server
