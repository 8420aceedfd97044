#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

#include "engine/scheduler.h"

namespace slm::server {
namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const char* name, double v) {
  out += name;
  out += ' ';
  out += number(v);
  out += '\n';
}

// Label values are ours (endpoint names, the model id); escape anyway so a
// model name with a quote cannot break the exposition format.
std::string label(std::string_view v) {
  std::string s;
  for (const char c : v) {
    if (c == '\\' || c == '"') s += '\\';
    if (c == '\n') {
      s += "\\n";
      continue;
    }
    s += c;
  }
  return s;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + number(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + number(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

void Metrics::set_model(std::string model) {
  std::lock_guard<std::mutex> lock(mutex_);
  info_.model = std::move(model);
}

Metrics::Metrics(MetricsInfo info)
    : info_(std::move(info)),
      ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      step_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      queue_({0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      batch_({1, 2, 4, 8, 16, 32, 64, 128, 256}),
      rows_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}) {}

void Metrics::on_request(std::string_view endpoint, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{std::string(endpoint), status}];
}

void Metrics::on_adapter_request(std::string_view adapter, int64_t n_generated) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = adapters_.find(adapter);
  if (it == adapters_.end()) it = adapters_.emplace(std::string(adapter), AdapterCounts{}).first;
  ++it->second.requests;
  it->second.generated += static_cast<uint64_t>(std::max<int64_t>(0, n_generated));
}

void Metrics::on_prompt(int64_t n_prompt, int64_t n_cached) {
  std::lock_guard<std::mutex> lock(mutex_);
  prompt_tokens_ += static_cast<uint64_t>(n_prompt);
  cached_tokens_ += static_cast<uint64_t>(n_cached);
}

void Metrics::on_admitted(double queue_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_.observe(queue_seconds);
}

void Metrics::on_batch(int64_t n_sequences, int64_t n_rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_.observe(static_cast<double>(n_sequences));
  rows_.observe(static_cast<double>(n_rows));
}

void Metrics::on_first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::on_token_interval(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  tpot_.observe(seconds);
}

void Metrics::on_step(double seconds, int64_t n_tokens) {
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  busy_seconds_ += seconds;
  generated_tokens_ += static_cast<uint64_t>(n_tokens);
  step_.observe(seconds);
  if (n_tokens > 0) recent_.emplace_back(now, n_tokens);
  while (!recent_.empty() && now - recent_.front().first > std::chrono::duration<double>(kWindow))
    recent_.pop_front();
}

void Metrics::on_pruned(uint64_t zeroed, uint64_t total) {
  std::lock_guard<std::mutex> lock(mutex_);
  pruned_ += zeroed;
  tapped_ += total;
}

double Metrics::recent_rate_locked(Clock::time_point now) const {
  int64_t n = 0;
  for (const auto& [t, k] : recent_)
    if (now - t <= std::chrono::duration<double>(kWindow)) n += k;
  return static_cast<double>(n) / kWindow;
}

double Metrics::recent_tokens_per_second() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return recent_rate_locked(Clock::now());
}

double Metrics::usd_per_million_tokens() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (info_.cost_per_hour <= 0 || generated_tokens_ == 0) return 0;
  return info_.cost_per_hour / 3600.0 * busy_seconds_ / static_cast<double>(generated_tokens_) *
         1e6;
}

std::string Metrics::render(const engine::SchedulerStats& st) const {
  const double usd = usd_per_million_tokens();
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  header(out, "slm_model_info", "gauge", "The model being served.");
  out += "slm_model_info{model=\"" + label(info_.model) + "\"} 1\n";

  header(out, "slm_requests_total", "counter", "HTTP API requests by endpoint and status code.");
  for (const auto& [key, n] : requests_)
    out += "slm_requests_total{endpoint=\"" + label(key.first) + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";

  header(out, "slm_adapter_requests_total", "counter",
         "Finished completion requests by LoRA adapter (adapter=\"\" is the base model).");
  for (const auto& [name, n] : adapters_)
    out += "slm_adapter_requests_total{adapter=\"" + label(name) + "\"} " +
           std::to_string(n.requests) + "\n";
  header(out, "slm_adapter_generated_tokens_total", "counter",
         "Tokens generated by LoRA adapter (adapter=\"\" is the base model).");
  for (const auto& [name, n] : adapters_)
    out += "slm_adapter_generated_tokens_total{adapter=\"" + label(name) + "\"} " +
           std::to_string(n.generated) + "\n";

  header(out, "slm_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  sample(out, "slm_prompt_tokens_total", static_cast<double>(prompt_tokens_));
  header(out, "slm_prompt_tokens_cached_total", "counter",
         "Prompt tokens reused from a KV cache (shared prefix) instead of computed.");
  sample(out, "slm_prompt_tokens_cached_total", static_cast<double>(cached_tokens_));
  header(out, "slm_generated_tokens_total", "counter", "Tokens generated.");
  sample(out, "slm_generated_tokens_total", static_cast<double>(generated_tokens_));
  header(out, "slm_busy_seconds_total", "counter", "Seconds spent in forward steps.");
  sample(out, "slm_busy_seconds_total", busy_seconds_);

  header(out, "slm_pruned_activations_total", "counter",
         "Projection inputs zeroed by activation pruning (--sparsity).");
  sample(out, "slm_pruned_activations_total", static_cast<double>(pruned_));
  header(out, "slm_pruning_tapped_activations_total", "counter",
         "Projection inputs seen where --sparsity prunes.");
  sample(out, "slm_pruning_tapped_activations_total", static_cast<double>(tapped_));
  header(out, "slm_activation_sparsity_ratio", "gauge",
         "Achieved activation sparsity: pruned / tapped inputs so far (0 without --sparsity).");
  sample(out, "slm_activation_sparsity_ratio",
         tapped_ > 0 ? static_cast<double>(pruned_) / static_cast<double>(tapped_) : 0.0);

  header(out, "slm_time_to_first_token_seconds", "histogram",
         "From request arrival to its first token.");
  ttft_.render(out, "slm_time_to_first_token_seconds");
  header(out, "slm_time_per_output_token_seconds", "histogram",
         "Between consecutive tokens of one request.");
  tpot_.render(out, "slm_time_per_output_token_seconds");
  header(out, "slm_step_seconds", "histogram", "Duration of one batched forward step.");
  step_.render(out, "slm_step_seconds");
  header(out, "slm_step_batch_size", "histogram", "Sequences advanced by one batched step.");
  batch_.render(out, "slm_step_batch_size");
  header(out, "slm_step_tokens", "histogram",
         "Token rows fed to one batched step (decoding rows, drafts and prompt chunks).");
  rows_.render(out, "slm_step_tokens");
  header(out, "slm_queue_seconds", "histogram", "From request arrival to taking a slot.");
  queue_.render(out, "slm_queue_seconds");

  header(out, "slm_queue_length", "gauge", "Requests waiting for a slot.");
  sample(out, "slm_queue_length", static_cast<double>(st.queued));
  header(out, "slm_active_sequences", "gauge", "Requests running in a slot.");
  sample(out, "slm_active_sequences", static_cast<double>(st.active));
  header(out, "slm_slots", "gauge", "Sequences that can run at once (--parallel).");
  sample(out, "slm_slots", static_cast<double>(st.n_slots));
  header(out, "slm_context_size_tokens", "gauge", "Context of each slot (--ctx-size).");
  sample(out, "slm_context_size_tokens", static_cast<double>(st.n_ctx));
  header(
      out, "slm_kv_cache_tokens", "gauge",
      "KV cache positions in use: by running requests, and kept by idle slots for prefix reuse.");
  out += "slm_kv_cache_tokens{state=\"active\"} " + std::to_string(st.kv_active_tokens) + "\n";
  out += "slm_kv_cache_tokens{state=\"cached\"} " + std::to_string(st.kv_cached_tokens) + "\n";
  header(out, "slm_kv_cache_usage_ratio", "gauge",
         "Share of all KV cache positions used by running requests.");
  const double capacity = static_cast<double>(st.n_slots) * static_cast<double>(st.n_ctx);
  sample(out, "slm_kv_cache_usage_ratio",
         capacity > 0 ? static_cast<double>(st.kv_active_tokens) / capacity : 0);

  header(out, "slm_generation_tokens_per_second", "gauge",
         "Generated tokens per second over the last 10 seconds.");
  sample(out, "slm_generation_tokens_per_second", recent_rate_locked(Clock::now()));
  if (info_.cost_per_hour > 0) {
    header(out, "slm_cost_usd_per_hour", "gauge", "The machine's cost per hour (--cost-per-hour).");
    sample(out, "slm_cost_usd_per_hour", info_.cost_per_hour);
    header(out, "slm_estimated_usd_per_million_tokens", "gauge",
           "Estimated USD per million generated tokens at the throughput achieved while busy.");
    sample(out, "slm_estimated_usd_per_million_tokens", usd);
  }
  if (info_.watts > 0 && generated_tokens_ > 0) {
    header(out, "slm_estimated_joules_per_token", "gauge",
           "Estimated energy per generated token from --watts and the time spent busy.");
    sample(out, "slm_estimated_joules_per_token",
           info_.watts * busy_seconds_ / static_cast<double>(generated_tokens_));
  }
  return out;
}

}  // namespace slm::server
