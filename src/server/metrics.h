// Server metrics in the Prometheus text format (GET /metrics): requests by
// endpoint and status, prompt / cached / generated tokens, histograms of time
// to first token, time per output token, queue time, and per step its
// duration, sequences and token rows; queue length, running sequences,
// KV cache use, recent generation speed, and estimates of cost and energy per
// token from the operator's --cost-per-hour and --watts, and finished
// requests and generated tokens per LoRA adapter (label adapter="NAME"; the
// base model is adapter="").
//
// The engine reports prompts, steps and token times through the
// EngineObserver interface, which Metrics implements; the HTTP layer reports
// requests.
//
// Thread-safety: every method may be called from any thread (one mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/observer.h"

namespace slm::engine {
struct SchedulerStats;
}

namespace slm::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending
  void observe(double v);
  // Appends the _bucket / _sum / _count lines for name.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct MetricsInfo {
  std::string model;         // the served model's id
  double cost_per_hour = 0;  // USD per hour of the machine; 0: unknown
  double watts = 0;          // power drawn while generating; 0: unknown
};

class Metrics : public engine::EngineObserver {
 public:
  explicit Metrics(MetricsInfo info);
  // The model id, once loading has finished.
  void set_model(std::string model);

  void on_request(std::string_view endpoint, int status);
  // A completion request finished (any finish reason) on adapter ("": the
  // base model) after generating n_generated tokens.
  void on_adapter_request(std::string_view adapter, int64_t n_generated);
  void on_prompt(int64_t n_prompt, int64_t n_cached) override;
  void on_admitted(double queue_seconds) override;
  void on_batch(int64_t n_sequences, int64_t n_rows) override;
  void on_first_token(double seconds) override;
  void on_token_interval(double seconds) override;
  // One batched forward step that took seconds and produced n_tokens tokens.
  void on_step(double seconds, int64_t n_tokens) override;
  void on_pruned(uint64_t zeroed, uint64_t total) override;

  // Generated tokens per second over the last kWindow seconds.
  double recent_tokens_per_second() const;
  // USD per million generated tokens at the throughput achieved so far (busy
  // time only); 0 when unknown.
  double usd_per_million_tokens() const;

  std::string render(const engine::SchedulerStats& stats) const;

  static constexpr double kWindow = 10.0;

 private:
  using Clock = std::chrono::steady_clock;
  double recent_rate_locked(Clock::time_point now) const;

  mutable std::mutex mutex_;
  MetricsInfo info_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  struct AdapterCounts {
    uint64_t requests = 0, generated = 0;
  };
  std::map<std::string, AdapterCounts, std::less<>> adapters_;  // "" is the base
  uint64_t prompt_tokens_ = 0, cached_tokens_ = 0, generated_tokens_ = 0;
  double busy_seconds_ = 0;
  uint64_t pruned_ = 0, tapped_ = 0;  // activations zeroed by --sparsity / seen at its taps
  Histogram ttft_, tpot_, step_;
  Histogram queue_;                                           // seconds from submission to a slot
  Histogram batch_, rows_;                                    // per step: sequences, token rows
  std::deque<std::pair<Clock::time_point, int64_t>> recent_;  // (step end, tokens) within kWindow
};

}  // namespace slm::server
