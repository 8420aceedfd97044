// GET /slm/status's document and the client that reads it for `slm ps`.
#include "server/status.h"

#include <httplib.h>

#include <string>

#include "base/dtype.h"
#include "base/error.h"
#include "server/server.h"

namespace slm::server {

using OJson = nlohmann::ordered_json;

OJson status_json(const Backend* b, double uptime_s) {
  OJson j{{"ready", b != nullptr}, {"uptime_s", uptime_s}};
  if (!b) return j;
  const model::Model& m = *b->model;
  j["model"] = OJson{{"id", b->model_id},
                     {"path", b->model_path},
                     {"architecture", m.config().arch_name},
                     {"file_bytes", m.file().file_size()},
                     {"n_params", m.n_params()}};
  OJson adapters = OJson::array();
  for (const auto& e : b->adapters.list())
    adapters.push_back(OJson{{"name", e->name},
                             {"path", e->path},
                             {"scale", e->scale},
                             {"rank", e->adapter->max_rank()}});
  j["adapters"] = std::move(adapters);
  const engine::SchedulerStats s = b->scheduler->stats();
  j["slots"] = OJson{{"total", s.n_slots}, {"busy", s.active}};
  j["n_ctx_per_slot"] = s.n_ctx;
  j["queue"] = s.queued;
  j["kv_cache"] = OJson{{"type", std::string(dtype_name(b->kv_type))},
                        {"bytes", b->scheduler->kv_bytes()},
                        {"tokens_active", s.kv_active_tokens},
                        {"tokens_cached", s.kv_cached_tokens}};
  return j;
}

nlohmann::ordered_json fetch_status(const std::string& url, const std::string& api_key,
                                    int timeout_s) {
  std::string base = url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0) base = "http://" + base;
  httplib::Client cli(base);
  if (!cli.is_valid()) throw Error("'" + url + "' is not a server URL (http://HOST:PORT)");
  cli.set_connection_timeout(timeout_s, 0);
  cli.set_read_timeout(timeout_s, 0);
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  const auto r = cli.Get("/slm/status", headers);
  if (!r)
    throw Error("no slm server answers at " + base + " (" +
                (r.error() == httplib::Error::Connection ? std::string("cannot connect")
                                                         : httplib::to_string(r.error())) +
                "); start one with `slm serve`");
  if (r->status == 401)
    throw Error(base + " needs an API key" +
                (api_key.empty() ? ": give it with --api-key K" : ", and this one is wrong"));
  if (r->status == 404)
    throw Error(base + " has no /slm/status: it is not slm serve, or an older version");
  auto j = OJson::parse(r->body, nullptr, false);
  if (r->status != 200 || j.is_discarded() || !j.is_object() || !j.contains("ready"))
    throw Error(base + "/slm/status answered HTTP " + std::to_string(r->status) +
                " without a status document");
  return j;
}

}  // namespace slm::server
