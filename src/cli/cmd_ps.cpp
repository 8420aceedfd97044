// slm ps: what a running `slm serve` holds (model, adapters, slots, queue,
// KV cache, uptime), read from its GET /slm/status, as a small table or JSON.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "server/auth.h"
#include "server/status.h"

namespace slm::cli {
namespace {

using Json = nlohmann::ordered_json;

Options ps_options() {
  Options o("ps",
            "usage: slm ps [URL] [options]\n"
            "  What a running `slm serve` holds: its model, adapters, slots, queue, KV cache and uptime.\n"
            "  URL is the server (default http://127.0.0.1:8080).\n");
  o.value("--api-key", "K", "the server's API key");
  o.value("--api-key-file", "F", "the same, read from F's first line");
  o.flag("--json", "print the server's status document (GET /slm/status) as JSON");
  o.value("--timeout", "S", "seconds to wait for an answer").integer(1, 3600).def("5");
  return o;
}

// Values from a server are untrusted: a missing or mistyped field shows "?".
std::string num(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return "?";
  return std::to_string(j[key].get<int64_t>());
}
std::string str(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "?";
  return j[key].get<std::string>();
}
std::string bytes(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return "?";
  return human_bytes(j[key].get<double>());
}
std::string duration(double s) {
  const auto t = static_cast<int64_t>(s);
  char buf[48];
  if (t < 60)
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(t));
  else if (t < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60));
  return buf;
}

// Columns padded to their widest cell.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 3, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

int run_ps(int argc, char** argv) {
  const Args args = ps_options().parse(argc, argv);
  if (args.positional().size() > 1)
    throw UsageError("unexpected argument '" + args.positional()[1] + "'");
  const std::string url =
      args.positional().empty() ? "http://127.0.0.1:8080" : args.positional()[0];
  if (args.has("--api-key") && args.has("--api-key-file"))
    throw UsageError("give --api-key or --api-key-file, not both");
  std::string key;
  if (const auto k = args.get("--api-key"))
    key = *k;
  else if (const auto f = args.get("--api-key-file"))
    key = server::read_key_file(*f);
  const int timeout = static_cast<int>(args.get_int("--timeout"));

  const Json j = server::fetch_status(url, key, timeout);
  if (args.flag("--json")) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  const double up =
      j.contains("uptime_s") && j["uptime_s"].is_number() ? j["uptime_s"].get<double>() : 0.0;
  if (!(j["ready"].is_boolean() && j["ready"].get<bool>())) {
    std::printf("%s: loading its model (up %s)\n", url.c_str(), duration(up).c_str());
    return 0;
  }
  const Json& m = j.contains("model") ? j["model"] : Json();
  const Json& slots = j.contains("slots") ? j["slots"] : Json();
  const Json& kv = j.contains("kv_cache") ? j["kv_cache"] : Json();
  print_table(
      {{"MODEL", "SIZE", "CONTEXT/SLOT", "SLOTS BUSY", "QUEUE", "KV CACHE", "UPTIME", "PATH"},
       {str(m, "id"), bytes(m, "file_bytes"), num(j, "n_ctx_per_slot"),
        num(slots, "busy") + "/" + num(slots, "total"), num(j, "queue"),
        bytes(kv, "bytes") + " " + str(kv, "type"), duration(up), str(m, "path")}});
  if (j.contains("adapters") && j["adapters"].is_array() && !j["adapters"].empty()) {
    std::printf("\n");
    std::vector<std::vector<std::string>> rows{{"ADAPTER", "SCALE", "RANK", "PATH"}};
    for (const Json& a : j["adapters"]) {
      char scale[32] = "?";
      if (a.is_object() && a.contains("scale") && a["scale"].is_number())
        std::snprintf(scale, sizeof scale, "%g", a["scale"].get<double>());
      rows.push_back({str(a, "name"), scale, num(a, "rank"), str(a, "path")});
    }
    print_table(rows);
  }
  return 0;
}

SLM_COMMAND("ps", "what a running slm serve holds: model, adapters, slots, queue, KV cache",
            ps_options, run_ps);

}  // namespace
}  // namespace slm::cli
