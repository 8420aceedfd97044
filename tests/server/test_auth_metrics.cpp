// API-key checks, the key file, loopback detection and the metrics text.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "engine/scheduler.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/server.h"

namespace slm::server {
namespace {

TEST(Auth, DisabledAcceptsEverything) {
  const ApiKeyCheck a("");
  EXPECT_FALSE(a.enabled());
  EXPECT_TRUE(a.check(""));
  EXPECT_TRUE(a.check("Bearer x"));
}

TEST(Auth, KeyMustMatchExactly) {
  const ApiKeyCheck a("s3cret-key");
  EXPECT_TRUE(a.enabled());
  EXPECT_TRUE(a.check("Bearer s3cret-key"));
  EXPECT_TRUE(a.check("bearer s3cret-key"));
  EXPECT_TRUE(a.check("BEARER  s3cret-key "));
  EXPECT_FALSE(a.check(""));
  EXPECT_FALSE(a.check("s3cret-key"));
  EXPECT_FALSE(a.check("Basic s3cret-key"));
  EXPECT_FALSE(a.check("Bearer s3cret-ke"));
  EXPECT_FALSE(a.check("Bearer s3cret-key2"));
  EXPECT_FALSE(a.check("Bearer S3CRET-KEY"));
  EXPECT_FALSE(a.check("Bearer "));
}

TEST(Auth, Sha256KnownAnswer) {
  const auto d = sha256("abc");
  EXPECT_EQ(d[0], 0xba);
  EXPECT_EQ(d[1], 0x78);
  EXPECT_EQ(d[31], 0xad);
}

TEST(Auth, KeyFile) {
  const auto path =
      std::filesystem::temp_directory_path() / ("slm_key_" + std::to_string(::getpid()));
  { std::ofstream(path) << "  abc123 \nsecond line\n"; }
  EXPECT_EQ(read_key_file(path.string()), "abc123");
  { std::ofstream(path) << "\n"; }
  EXPECT_THROW(read_key_file(path.string()), Error);
  std::filesystem::remove(path);
  EXPECT_THROW(read_key_file(path.string()), Error);
}

TEST(Server, LoopbackHosts) {
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("192.168.1.5"));
  EXPECT_FALSE(is_loopback_host("::"));
}

TEST(Server, RefusesOpenNonLoopbackWithoutKey) {
  ServerOptions o;
  o.host = "0.0.0.0";
  EXPECT_THROW(Server(o, false), Error);
  o.api_key.assign(3, 'k');  // not = "k": g++ 12 warns falsely (-Wrestrict)
  o.port = 0;
  EXPECT_NO_THROW(Server(o, false));
  o.api_key.clear();
  EXPECT_NO_THROW(Server(o, true));
}

TEST(Metrics, PrometheusText) {
  Metrics m(MetricsInfo{"my\"model", 3.6, 100});
  m.on_request("chat_completions", 200);
  m.on_request("chat_completions", 200);
  m.on_request("completions", 400);
  m.on_prompt(10, 4);
  m.on_first_token(0.03);
  m.on_token_interval(0.004);
  m.on_token_interval(0.2);
  m.on_step(0.5, 10);
  m.on_pruned(30, 100);
  m.on_pruned(10, 60);
  m.on_admitted(0.02);
  m.on_batch(3, 130);  // two decoding rows and a 128-token prompt chunk
  m.on_batch(1, 1);
  engine::SchedulerStats s;
  s.queued = 2;
  s.active = 1;
  s.n_slots = 4;
  s.n_ctx = 100;
  s.kv_active_tokens = 40;
  const std::string t = m.render(s);
  auto has = [&](const std::string& line) {
    EXPECT_NE(t.find(line), std::string::npos) << line << "\n" << t;
  };
  has("slm_model_info{model=\"my\\\"model\"} 1\n");
  has("slm_requests_total{endpoint=\"chat_completions\",status=\"200\"} 2\n");
  has("slm_requests_total{endpoint=\"completions\",status=\"400\"} 1\n");
  has("slm_prompt_tokens_total 10\n");
  has("slm_prompt_tokens_cached_total 4\n");
  has("slm_generated_tokens_total 10\n");
  has("slm_time_to_first_token_seconds_bucket{le=\"0.025\"} 0\n");
  has("slm_time_to_first_token_seconds_bucket{le=\"0.05\"} 1\n");
  has("slm_time_to_first_token_seconds_count 1\n");
  has("slm_time_per_output_token_seconds_bucket{le=\"0.005\"} 1\n");
  has("slm_time_per_output_token_seconds_bucket{le=\"+Inf\"} 2\n");
  has("slm_queue_length 2\n");
  has("slm_active_sequences 1\n");
  has("slm_kv_cache_tokens{state=\"active\"} 40\n");
  has("slm_kv_cache_usage_ratio 0.1\n");
  has("slm_generation_tokens_per_second 1\n");  // 10 tokens in the 10 s window
  // 3.6 USD/h = 0.001 USD/s; 0.5 s busy for 10 tokens -> 50 USD per million.
  has("slm_estimated_usd_per_million_tokens 50\n");
  has("slm_estimated_joules_per_token 5\n");
  has("# TYPE slm_time_to_first_token_seconds histogram\n");
  has("slm_pruned_activations_total 40\n");
  has("slm_pruning_tapped_activations_total 160\n");
  has("slm_activation_sparsity_ratio 0.25\n");
  has("# TYPE slm_queue_seconds histogram\n");
  has("slm_queue_seconds_bucket{le=\"0.01\"} 0\n");
  has("slm_queue_seconds_bucket{le=\"0.05\"} 1\n");
  has("slm_queue_seconds_count 1\n");
  has("# TYPE slm_step_batch_size histogram\n");
  has("slm_step_batch_size_bucket{le=\"1\"} 1\n");
  has("slm_step_batch_size_bucket{le=\"2\"} 1\n");
  has("slm_step_batch_size_bucket{le=\"4\"} 2\n");
  has("slm_step_batch_size_sum 4\n");
  has("# TYPE slm_step_tokens histogram\n");
  has("slm_step_tokens_bucket{le=\"128\"} 1\n");
  has("slm_step_tokens_bucket{le=\"256\"} 2\n");
  has("slm_step_tokens_sum 131\n");
  has("slm_step_tokens_count 2\n");
}

}  // namespace
}  // namespace slm::server
