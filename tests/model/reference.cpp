#include "model/reference.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace slm::test {

std::vector<std::string> reference_names(const std::string& fixtures) {
  std::vector<std::string> names;
  for (const char* sub : {"reference", "reference-families"}) {
    if (!std::filesystem::exists(fixtures + "/" + sub)) continue;
    for (const auto& e : std::filesystem::directory_iterator(fixtures + "/" + sub))
      if (e.path().extension() == ".json") names.push_back(std::string(sub) + "/" + e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

Reference load_reference(const std::string& fixtures, const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = fixtures + "/" + path.substr(0, slash + 1);
  const std::string json_name = path.substr(slash + 1);
  std::ifstream in(dir + json_name);
  const nlohmann::json j = nlohmann::json::parse(in);
  Reference r;
  // "MODEL.PROMPT.json": the model name never contains a dot.
  const std::string stem = json_name.substr(0, json_name.size() - 5);
  r.model = stem.substr(0, stem.find('.'));
  r.prompt = stem.substr(stem.find('.') + 1);
  r.prompt_tokens = j.at("prompt_tokens").get<std::vector<int32_t>>();
  r.greedy_tokens = j.at("greedy_tokens").get<std::vector<int32_t>>();
  r.n_vocab = j.at("n_vocab").get<int64_t>();
  const int64_t rows = j.at("logits_rows").get<int64_t>();
  std::ifstream lf(dir + j.at("logits_file").get<std::string>(), std::ios::binary);
  r.logits.resize(static_cast<size_t>(rows * r.n_vocab));
  lf.read(reinterpret_cast<char*>(r.logits.data()), static_cast<std::streamsize>(r.logits.size() * 4));
  if (!lf) throw std::runtime_error("short logits file for " + json_name);
  return r;
}

double kl_divergence(const float* ref, const float* got, int64_t n) {
  auto log_softmax = [n](const float* x, std::vector<double>& out) {
    double mx = x[0];
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
    const double lse = mx + std::log(sum);
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] - lse;
  };
  std::vector<double> lp, lq;
  log_softmax(ref, lp);
  log_softmax(got, lq);
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}

}  // namespace slm::test
