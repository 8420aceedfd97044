// Shared by the LoRA server tests (test_http_lora*.cpp): random adapter
// files in llama.cpp's layout, resident memory, and a fixture that starts a
// server over tiny-llama with adapters a1..a4 and --lora-dir. Header-only.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <malloc.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/fixtures.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "server/server.h"

namespace slm::server::test_lora {

using Json = nlohmann::json;
namespace fs = std::filesystem;

// A random adapter in llama.cpp's layout on every attention and FFN matrix
// of the model, strong enough to change greedy output.
inline void write_adapter(const fs::path& path, const gguf::File& base, uint32_t seed,
                          int64_t rank = 8) {
  gguf::Writer w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "adapter");
  w.add_string("adapter.type", "lora");
  w.add_f32("adapter.lora.alpha", static_cast<float>(rank));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.4f);
  std::vector<std::vector<float>> keep;
  keep.reserve(256);
  for (const gguf::TensorInfo& t : base.tensors()) {
    const std::string name(t.name);
    if (name.rfind("blk.", 0) != 0 || t.n_dims != 2) continue;
    if (name.find("attn_") == std::string::npos && name.find("ffn_") == std::string::npos) continue;
    if (name.find("norm") != std::string::npos) continue;
    const int64_t n_in = t.ne[0], n_out = t.ne[1];
    auto& a = keep.emplace_back(static_cast<size_t>(rank * n_in));
    for (float& x : a) x = dist(rng);
    auto& b = keep.emplace_back(static_cast<size_t>(n_out * rank));
    for (float& x : b) x = dist(rng);
    auto bytes = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                      v.size() * sizeof(float));
    };
    w.add_tensor(name + ".lora_a", DType::F32, {n_in, rank}, bytes(a));
    w.add_tensor(name + ".lora_b", DType::F32, {rank, n_out}, bytes(b));
  }
  w.write(path.string());
}

// Resident memory after returning free heap pages to the system, so the
// number follows live allocations rather than the allocator's free lists.
inline size_t rss_bytes() {
  ::malloc_trim(0);
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

class HttpLora : public ::testing::Test {
 protected:
  fs::path root() const {
    return fs::temp_directory_path() / ("slm-http-lora-" + std::to_string(::getpid()));
  }
  fs::path allowed() const { return root() / "adapters"; }

  void SetUp() override {
    SLM_REQUIRE_FIXTURE("models/tiny-llama.gguf");
    path_ = test::fixture("models/tiny-llama.gguf");
    fs::create_directories(allowed());
    fs::create_directories(root() / "outside");
    const auto base = gguf::File::open(path_);
    for (uint32_t i = 1; i <= 4; ++i)
      write_adapter(allowed() / ("a" + std::to_string(i) + ".gguf"), *base, i);
    write_adapter(root() / "outside" / "evil.gguf", *base, 99);
    fs::create_symlink(root() / "outside" / "evil.gguf", allowed() / "link.gguf");
  }
  void TearDown() override {
    if (srv_) {
      srv_->stop();
      srv_->wait();
    }
    srv_.reset();
    fs::remove_all(root());
  }

  // A server over tiny-llama with adapters a1..a4 loaded at start.
  httplib::Client& start(int n_slots, const std::string& api_key = {}, int http_threads = 0) {
    ServerOptions o;
    o.port = 0;
    o.http_threads = http_threads;
    o.n_slots = n_slots;
    o.api_key = api_key;
    srv_ = std::make_unique<Server>(o, false);
    port_ = srv_->start();
    engine::SchedulerOptions so;
    so.n_slots = n_slots;
    so.n_ctx = 256;
    so.n_threads = 2;
    BackendOptions extra;
    for (const char* name : {"a1", "a2", "a3", "a4"}) {
      std::string spec = name;
      spec += '=';
      spec += (allowed() / name).string();
      spec += ".gguf";
      extra.adapters.push_back(parse_adapter_spec(spec));
    }
    extra.lora_dirs = {allowed().string()};
    extra.aliases = {"base-alias"};
    srv_->set_backend(load_backend(path_, "tiny", so, &srv_->metrics(), extra));
    cli_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    if (!api_key.empty()) cli_->set_bearer_token_auth(api_key);
    return *cli_;
  }

  // One completion's text (status checked by the caller when wanted).
  static httplib::Result complete(httplib::Client& c, const std::string& model,
                                  const std::vector<int>& prompt, int max_tokens) {
    Json body = {
        {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"ignore_eos", true}};
    if (!model.empty()) body["model"] = model;
    return c.Post("/v1/completions", body.dump(), "application/json");
  }

  std::string path_;
  std::unique_ptr<Server> srv_;
  std::unique_ptr<httplib::Client> cli_;
  int port_ = 0;
};

}  // namespace slm::server::test_lora
