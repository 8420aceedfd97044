// Downloading models from the Hugging Face hub (or any server with the same
// /{repo}/resolve/{revision}/{file} layout) into the Store.
//
// A download goes to "<file>.part" next to its final place and resumes from
// there with a Range request, both after a dropped connection (automatically,
// within one call) and in a later `slm pull` after an interrupted one. The
// result must match the size the server announced and, when the hub
// publishes it (X-Linked-Etag / ETag holding 64 hex digits on LFS files), its
// SHA-256; it must also parse as GGUF before it is moved into the store.
//
// Thread-safety: one pull of a given file at a time; a second process pulling
// the same file fails fast (the .part file is locked).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "store/store.h"

namespace slm::store {

struct PullOptions {
  std::string endpoint = "https://huggingface.co";  // hub base URL
  std::string token;  // sent as "Authorization: Bearer" to the endpoint's host only; empty: none
  enum class Progress { kAuto, kAlways, kNever };
  Progress progress = Progress::kAuto;  // kAuto: a bar when stderr is a terminal
  int max_retries = 5;       // reconnections after failures that made no progress
  int retry_delay_ms = 1000; // wait before reconnecting (doubles each time)
  int timeout_s = 60;        // read / write timeout
  int connect_timeout_s = 10; // connecting (a host that does not answer fails this fast)
  bool force = false;        // download again even when the store has the model
  bool make_default = false; // make it the default (it also becomes the default when there is none)
  // Told one line about what the pull is doing (the URL it starts on, a
  // retry and why) as it happens; may be empty.
  std::function<void(const std::string&)> on_status;

  // Defaults with $HF_ENDPOINT and $HF_TOKEN applied.
  static PullOptions from_environment();
};

// "{endpoint}/{repo}/resolve/{revision}/{file}", percent-encoded.
std::string hub_url(const std::string& endpoint, const ModelRef& ref);

struct DownloadResult {
  uint64_t size = 0;
  std::string sha256;        // of the downloaded bytes
  std::string hub_sha256;    // what the server published; empty if nothing
  uint64_t resumed_from = 0; // bytes already in the .part file that were kept
};

// Fetches url into part, resuming from part's current contents. Follows up to
// 10 redirects (the token goes only to the first URL's host). Checks the size
// and the published SHA-256; on a SHA-256 mismatch part is deleted. label
// names the download on the progress bar. A server that cannot be reached
// at all (DNS, refused, timeout, TLS) fails at once, without retries; lost
// connections and 408/429/5xx are retried. Throws slm::Error: one line naming
// the URL and the cause (the HTTP status, or what failed and a hint).
// Afterwards part is gone unless it holds bytes a later run can resume from
// (an HTTP error such as 404 removes it).
DownloadResult download(const std::string& url, const std::filesystem::path& part,
                        const PullOptions& options, const std::string& label);

struct PullResult {
  ModelEntry entry;
  bool already_present = false;  // nothing was downloaded
  bool made_default = false;
  uint64_t resumed_from = 0;
};

// Pull by repository (RepoRef, store.h): the GGUF files the hub lists for the
// repository at its revision ({endpoint}/api/models/{repo}/revision/{rev});
// throws slm::Error naming the cause when the listing cannot be had.
std::vector<std::string> list_repo_ggufs(const RepoRef& ref, const PullOptions& options);
// The file to pull among a listing: the one whose name carries ref.quant as a
// whole tag (case-insensitive: "Q4_K" does not match "q4_k_m"); with no tag,
// the only model file, else Q4_K_M, Q4_0, Q5_K_M, Q8_0 in that order.
// Projector (mmproj) files are skipped; split models are refused. An error
// lists the files to choose from.
std::string choose_gguf(const std::vector<std::string>& files, const RepoRef& ref);
// list_repo_ggufs + choose_gguf, as a ModelRef for pull().
ModelRef resolve_repo(const RepoRef& ref, const PullOptions& options);

// Downloads ref into store (unless it is already there and !options.force),
// checks it parses as GGUF, and records it in the index.
PullResult pull(Store& store, const ModelRef& ref, const PullOptions& options);

}  // namespace slm::store
