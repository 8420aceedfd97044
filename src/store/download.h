// Internal to the pull files (not the store module's API: pull.h is): the
// Downloader behind download(), which owns one .part file and one transfer,
// and the pieces it is built from. Its HTTP side (URLs, redirects, request
// headers, reading the response) is in http.cpp; its file side (resuming,
// writing and hashing, retries, the final size / SHA-256 checks, the
// progress bar) in download.cpp.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>

#include "store/pull.h"
#include "store/sha256.h"

namespace slm::store::detail {

struct Url {
  std::string scheme;     // "http" or "https"
  std::string host_port;  // as written, for the client
  std::string host;       // lower-case, without port or brackets
  std::string target;     // path and query, starting with '/'
};

// Throws slm::Error for anything but an http or https URL with a host.
Url parse_url(const std::string& url);

// Why a request got no response at all, found by retrying the connection by
// hand (httplib reports DNS failures, refusals and timeouts all as
// "Connection"): the cause in words, and whether trying again may help.
struct NoResponse {
  std::string cause;
  bool transient = false;
};
NoResponse explain_no_response(httplib::Error error, const Url& url, int connect_timeout_s);

// One status line on stderr, redrawn at most ten times a second.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::string label) : enabled_(enabled), label_(std::move(label)) {
    const size_t slash = label_.rfind('/');
    if (slash != std::string::npos) label_ = label_.substr(slash + 1);
    if (label_.size() > 40) label_ = label_.substr(0, 37) + "...";
  }
  void start(uint64_t done) {
    start_ = std::chrono::steady_clock::now();
    start_bytes_ = done;
  }
  void update(uint64_t done, std::optional<uint64_t> total, bool force = false);
  void finish() {
    if (enabled_ && drawn_) std::fputs("\n", stderr);
    drawn_ = false;
  }

 private:
  bool enabled_;
  std::string label_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_{}, last_{};
  uint64_t start_bytes_ = 0;
};

// One download: the .part file, how much of it is good, and what the server
// has said about the whole file so far.
class Downloader {
 public:
  Downloader(const std::string& url, const std::filesystem::path& part,
             const PullOptions& options, const std::string& label);

  DownloadResult run();

 private:
  enum class Outcome { kDone, kRetry };
  struct Reply {  // what the response handler saw for the current request
    int status = 0;
    std::string reason, location, content_range, error_message;
  };

  void open_part();
  Outcome attempt();
  bool on_response(const httplib::Response& r);
  bool on_data(const char* data, size_t n);
  bool flush();  // writes pending_ to the file; false (and callback_error_) on failure
  void restart_from_zero();
  void note_total(uint64_t total);
  [[noreturn]] void fail_status(const std::string& url);
  // Run's body after the .part is open; run() removes a .part that is of no
  // use when this throws.
  void transfer();
  // "; check the network ..." after a failure to reach the server.
  std::string network_hint() const;

  const std::string url_;
  const Url origin_;
  const std::filesystem::path part_;
  const PullOptions& opt_;
  ProgressBar bar_;

  int fd_ = -1;
  uint64_t offset_ = 0;  // bytes received so far (in part_ or in pending_), all hashed
  // httplib hands the body over in 4 KiB pieces; writing them in 1 MiB
  // batches saves a system call per piece on multi-gigabyte files.
  std::string pending_;
  Sha256 hash_;
  DownloadResult result_;
  std::optional<uint64_t> total_;        // size announced by Content-Length / Content-Range
  std::optional<uint64_t> linked_size_;  // X-Linked-Size from the hub
  std::string hub_sha_;

  Reply reply_;
  bool receiving_ = false;     // the current response's body is being written
  bool range_mismatch_ = false;
  bool restarted_ = false;      // the attempt threw away the .part (server ignored or refused the range)
  std::string callback_error_;  // set inside httplib callbacks, thrown after they return
  std::string retry_reason_;
  bool contacted_ = false;     // some server has answered in this run
  bool discard_part_ = false;  // the failure makes the .part useless (an HTTP error)
};

}  // namespace slm::store::detail
