// What a running `slm serve` holds, for `slm ps`: GET /slm/status (behind the
// API key) answers status_json(); fetch_status() is the client side.
//
// The document (sizes in bytes, times in seconds):
//   {"ready": bool, "uptime_s": number,
//    "model": {"id", "path", "architecture", "file_bytes", "n_params"},   (when ready)
//    "adapters": [{"name", "path", "scale", "rank"}],
//    "slots": {"total", "busy"}, "n_ctx_per_slot", "queue",
//    "kv_cache": {"type", "bytes", "tokens_active", "tokens_cached"}}
//
// Thread-safety: status_json reads the scheduler's counters under its lock;
// fetch_status is a plain blocking call.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace slm::server {

struct Backend;

// backend null: still loading ({"ready": false, "uptime_s"} only).
nlohmann::ordered_json status_json(const Backend* backend, double uptime_s);

// GET url + "/slm/status" with the key (empty: none) and returns the parsed
// document. Throws slm::Error saying what went wrong in words: no server
// answering at url, a wrong or missing key (401), a server without
// /slm/status, or an answer that is not the document.
nlohmann::ordered_json fetch_status(const std::string& url, const std::string& api_key,
                                    int timeout_s = 5);

}  // namespace slm::server
