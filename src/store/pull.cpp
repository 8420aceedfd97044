#include "store/pull.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "gguf/gguf.h"
#include "store/sha256.h"

namespace slm::store {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxRedirects = 10;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Keeps a status line or header value to one printable line.
std::string one_line(std::string s, size_t max = 200) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

struct Url {
  std::string scheme;     // "http" or "https"
  std::string host_port;  // as written, for the client
  std::string host;       // lower-case, without port or brackets
  std::string target;     // path and query, starting with '/'
};

Url parse_url(const std::string& url) {
  const size_t sep = url.find("://");
  if (sep == std::string::npos) throw Error("invalid URL '" + one_line(url) + "'");
  Url u;
  u.scheme = lower(url.substr(0, sep));
  if (u.scheme != "http" && u.scheme != "https")
    throw Error("unsupported URL scheme in '" + one_line(url) + "' (use http or https)");
  const size_t start = sep + 3;
  const size_t end = url.find_first_of("/?#", start);
  u.host_port = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (u.host_port.empty() || u.host_port.find('@') != std::string::npos)
    throw Error("invalid host in URL '" + one_line(url) + "'");
  if (u.host_port[0] == '[') {
    u.host = lower(u.host_port.substr(1, u.host_port.find(']') - 1));
  } else {
    u.host = lower(u.host_port.substr(0, u.host_port.find(':')));
  }
  u.target = end == std::string::npos ? "/" : url.substr(end);
  u.target = u.target.substr(0, u.target.find('#'));
  if (u.target.empty() || u.target[0] != '/') u.target = "/" + u.target;
  return u;
}

std::string resolve_location(const Url& base, const std::string& loc) {
  if (loc.find("://") != std::string::npos) return loc;
  if (loc.rfind("//", 0) == 0) return base.scheme + ":" + loc;
  if (!loc.empty() && loc[0] == '/') return base.scheme + "://" + base.host_port + loc;
  std::string dir = base.target.substr(0, base.target.find('?'));
  dir = dir.substr(0, dir.rfind('/') + 1);
  return base.scheme + "://" + base.host_port + dir + loc;
}

// An ETag as the hub sends it ("W/\"abc\"" or "\"abc\"") -> abc, lower-case.
std::string etag_value(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return lower(e);
}

std::string percent_encode(std::string_view s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

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
  void update(uint64_t done, std::optional<uint64_t> total, bool force = false) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(done - std::min(done, start_bytes_)) / secs : 0;
    std::string line = "\r" + label_ + "  ";
    char buf[64];
    if (total && *total > 0) {
      std::snprintf(buf, sizeof buf, "%5.1f%%  ", 100.0 * static_cast<double>(done) / static_cast<double>(*total));
      line += buf + human_bytes(static_cast<double>(done)) + " / " + human_bytes(static_cast<double>(*total));
    } else {
      line += human_bytes(static_cast<double>(done));
    }
    if (secs >= 0.5) line += "  " + human_bytes(rate) + "/s";  // too noisy before
    if (total && rate > 0 && *total > done && secs >= 0.5) {
      const auto eta = static_cast<long long>(static_cast<double>(*total - done) / rate);
      std::snprintf(buf, sizeof buf, "  ETA %lld:%02lld", eta / 60, eta % 60);
      line += buf;
    }
    line += "\x1b[K";  // clear the rest of a longer previous line
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
  }
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

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;

 private:
  int fd_;
};

// One download: the .part file, how much of it is good, and what the server
// has said about the whole file so far.
class Downloader {
 public:
  Downloader(const std::string& url, const fs::path& part, const PullOptions& options,
             const std::string& label)
      : url_(url),
        origin_(parse_url(url)),
        part_(part),
        opt_(options),
        bar_(options.progress == PullOptions::Progress::kAlways ||
                 (options.progress == PullOptions::Progress::kAuto && ::isatty(STDERR_FILENO)),
             label) {}

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
  [[noreturn]] void fail_status(const std::string& url) const;

  const std::string url_;
  const Url origin_;
  const fs::path part_;
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
};

void Downloader::open_part() {
  fd_ = ::open(part_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw Error(part_.string() + ": cannot open: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0)
    throw Error(part_.string() + ": another slm pull is downloading this file");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw Error(part_.string() + ": cannot stat: " + std::strerror(errno));
  // Hash what an earlier run left, so the digest covers the whole file.
  std::vector<char> buf(1 << 20);
  const auto size = static_cast<uint64_t>(st.st_size);
  while (offset_ < size) {
    const ssize_t n = ::pread(fd_, buf.data(), std::min<uint64_t>(buf.size(), size - offset_),
                              static_cast<off_t>(offset_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(part_.string() + ": read error");
    hash_.update(buf.data(), static_cast<size_t>(n));
    offset_ += static_cast<uint64_t>(n);
  }
  result_.resumed_from = offset_;
}

bool Downloader::flush() {
  const uint64_t at = offset_ - pending_.size();
  size_t done = 0;
  while (done < pending_.size()) {
    const ssize_t w = ::pwrite(fd_, pending_.data() + done, pending_.size() - done, static_cast<off_t>(at + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (callback_error_.empty()) callback_error_ = std::string("write failed: ") + std::strerror(errno);
      return false;
    }
    done += static_cast<size_t>(w);
  }
  pending_.clear();
  return true;
}

void Downloader::restart_from_zero() {
  restarted_ = true;
  pending_.clear();
  if (::ftruncate(fd_, 0) != 0) callback_error_ = std::string("cannot truncate: ") + std::strerror(errno);
  offset_ = 0;
  hash_.reset();
  result_.resumed_from = 0;
}

void Downloader::note_total(uint64_t total) {
  if (total_ && *total_ != total && callback_error_.empty())
    callback_error_ = "the file changed size on the server during the download (" + std::to_string(*total_) +
                      " then " + std::to_string(total) + " bytes)";
  total_ = total;
}

bool Downloader::on_response(const httplib::Response& r) {
  reply_.status = r.status;
  reply_.reason = r.reason;
  reply_.location = r.get_header_value("Location");
  reply_.content_range = r.get_header_value("Content-Range");
  reply_.error_message = r.get_header_value("X-Error-Message");
  // The hub puts the LFS file's sha256 and size on its redirect to the CDN.
  const std::string linked = etag_value(r.get_header_value("X-Linked-Etag"));
  if (is_sha256_hex(linked)) hub_sha_ = linked;
  if (const auto s = parse_u64(r.get_header_value("X-Linked-Size"))) linked_size_ = s;
  if (hub_sha_.empty() && (r.status == 200 || r.status == 206 || r.status == 416)) {
    const std::string etag = etag_value(r.get_header_value("ETag"));
    if (is_sha256_hex(etag)) hub_sha_ = etag;
  }
  if (r.status != 200 && r.status != 206) return false;

  if (r.status == 200) {
    if (offset_ > 0) restart_from_zero();  // the server ignored the Range header
    if (r.has_header("Content-Length"))
      if (const auto n = parse_u64(r.get_header_value("Content-Length"))) note_total(*n);
  } else {
    // "bytes START-END/TOTAL": the body must continue exactly where the file stops.
    const std::string& cr = reply_.content_range;
    const size_t dash = cr.find('-'), slash = cr.find('/');
    const auto first = cr.rfind("bytes ", 0) == 0 && dash != std::string::npos
                           ? parse_u64(std::string_view(cr).substr(6, dash - 6))
                           : std::nullopt;
    if (!first || *first != offset_) {
      range_mismatch_ = true;
      return false;
    }
    if (slash != std::string::npos)
      if (const auto t = parse_u64(std::string_view(cr).substr(slash + 1))) note_total(*t);
  }
  receiving_ = callback_error_.empty();
  return receiving_;
}

bool Downloader::on_data(const char* data, size_t n) {
  if (total_ && offset_ + n > *total_) {
    callback_error_ = "the server sent more bytes than it announced";
    return false;
  }
  pending_.append(data, n);
  hash_.update(data, n);
  offset_ += n;
  if (pending_.size() >= (size_t{1} << 20) && !flush()) return false;
  bar_.update(offset_, total_ ? total_ : linked_size_);
  return true;
}

void Downloader::fail_status(const std::string& url) const {
  const int s = reply_.status;
  std::string detail = reply_.error_message.empty() ? "" : " (" + one_line(reply_.error_message) + ")";
  if (s == 404) throw Error("not found on the hub: " + url_ + " (HTTP 404)" + detail);
  if (s == 401 || s == 403) {
    const std::string status = " (HTTP " + std::to_string(s) + ")" + detail;
    if (opt_.token.empty())
      throw Error("access denied or not found: " + url_ + status +
                  ": check the name; if the repository is gated or private, set HF_TOKEN to a "
                  "Hugging Face access token that can read it");
    throw Error("access denied: " + url_ + status +
                " even with HF_TOKEN: check that the token can read this repository (gated models "
                "need their terms accepted on the hub)");
  }
  throw Error(url + ": HTTP " + std::to_string(s) + " " + one_line(reply_.reason) + detail);
}

Downloader::Outcome Downloader::attempt() {
  std::string url = url_;
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    const Url u = parse_url(url);
    httplib::Client cli(u.scheme + "://" + u.host_port);
    cli.set_follow_location(false);  // followed here, to read the hub's headers on the redirect
    cli.set_url_encode(false);       // hub_url and Location headers are already encoded
    cli.set_decompress(false);
    cli.set_connection_timeout(opt_.timeout_s, 0);
    cli.set_read_timeout(opt_.timeout_s, 0);
    cli.set_write_timeout(opt_.timeout_s, 0);
    httplib::Headers headers = {{"Accept-Encoding", "identity"}, {"User-Agent", "slm"}};
    // The token is for the hub only, never for the CDN it redirects to.
    if (!opt_.token.empty() && u.scheme == origin_.scheme && u.host_port == origin_.host_port)
      headers.emplace("Authorization", "Bearer " + opt_.token);
    if (offset_ > 0) headers.emplace("Range", "bytes=" + std::to_string(offset_) + "-");

    reply_ = {};
    receiving_ = false;
    range_mismatch_ = false;
    const httplib::Result res = cli.Get(
        u.target, headers, [this](const httplib::Response& r) { return on_response(r); },
        [this](const char* d, size_t n) { return on_data(d, n); });
    flush();  // keep what arrived, even from a connection that dropped
    if (!callback_error_.empty()) throw Error(url_ + " -> " + part_.string() + ": " + callback_error_);

    const int s = reply_.status;
    if (s == 0) {  // no response at all
      retry_reason_ = url + ": " + httplib::to_string(res.error());
      return Outcome::kRetry;
    }
    if (s == 301 || s == 302 || s == 303 || s == 307 || s == 308) {
      if (reply_.location.empty()) throw Error(url + ": HTTP " + std::to_string(s) + " without a Location");
      url = resolve_location(u, reply_.location);
      continue;
    }
    if (receiving_) {
      const bool complete = total_ ? offset_ == *total_ : res.error() == httplib::Error::Success;
      if (complete) return Outcome::kDone;
      retry_reason_ = url_ + ": the transfer stopped at " + std::to_string(offset_) +
                      (total_ ? " of " + std::to_string(*total_) : std::string()) + " bytes (" +
                      httplib::to_string(res.error()) + ")";
      return Outcome::kRetry;
    }
    if (s == 416) {
      // Nothing after offset_: either the .part already holds the whole file
      // (an earlier run stopped before moving it) or it is too long.
      const std::string& cr = reply_.content_range;
      const size_t slash = cr.find('/');
      const auto t = slash == std::string::npos ? std::nullopt : parse_u64(std::string_view(cr).substr(slash + 1));
      if (t && *t == offset_ && offset_ > 0) {
        note_total(*t);
        return Outcome::kDone;
      }
      restart_from_zero();
      retry_reason_ = url_ + ": the server refused to resume (HTTP 416)";
      return Outcome::kRetry;
    }
    if (range_mismatch_) {
      restart_from_zero();
      retry_reason_ = url_ + ": the server resumed at the wrong offset (" + one_line(reply_.content_range) + ")";
      return Outcome::kRetry;
    }
    if (s == 408 || s == 429 || s >= 500) {
      retry_reason_ = url + ": HTTP " + std::to_string(s) + " " + one_line(reply_.reason);
      return Outcome::kRetry;
    }
    fail_status(url);
  }
  throw Error(url_ + ": more than " + std::to_string(kMaxRedirects) + " redirects");
}

DownloadResult Downloader::run() {
  open_part();
  FdGuard guard(fd_);
  bar_.start(offset_);
  int failures = 0;
  int delay_ms = opt_.retry_delay_ms;
  while (true) {
    const uint64_t before = offset_;
    restarted_ = false;
    const Outcome outcome = attempt();
    if (outcome == Outcome::kDone) break;
    // Dropping a .part the server would not resume is not a failure: the
    // next request has no Range header. (A restart from an empty file is,
    // or a server answering 416 to everything would loop here.)
    if (restarted_ && before > 0 && offset_ == 0) continue;
    // A connection that moved the download forward does not count against
    // the retries: a long transfer over a flaky link gets there eventually.
    if (offset_ > before && opt_.max_retries > 0) {
      failures = 0;
      delay_ms = opt_.retry_delay_ms;
    } else if (++failures > opt_.max_retries) {
      bar_.finish();
      throw Error(retry_reason_ + (offset_ > 0 ? "; run the command again to resume from byte " +
                                                     std::to_string(offset_)
                                               : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    delay_ms = std::min(delay_ms * 2, 30000);
  }
  bar_.update(offset_, total_, true);
  bar_.finish();

  if (linked_size_ && offset_ != *linked_size_) {
    ::unlink(part_.c_str());
    throw Error(url_ + ": size mismatch: the hub lists " + std::to_string(*linked_size_) +
                " bytes, the download has " + std::to_string(offset_) + "; removed it, run the command again");
  }
  if (::fdatasync(fd_) != 0) throw Error(part_.string() + ": cannot flush: " + std::strerror(errno));
  result_.size = offset_;
  result_.sha256 = hash_.hex_digest();
  result_.hub_sha256 = hub_sha_;
  if (!hub_sha_.empty() && result_.sha256 != hub_sha_) {
    ::unlink(part_.c_str());
    throw Error(url_ + ": sha256 mismatch: the hub publishes " + hub_sha_ + ", the download has " +
                result_.sha256 + "; removed it, run the command again");
  }
  return result_;
}

}  // namespace

PullOptions PullOptions::from_environment() {
  PullOptions o;
  if (const char* e = std::getenv("HF_ENDPOINT"); e != nullptr && *e != '\0') o.endpoint = e;
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    if (const char* t = std::getenv(name); t != nullptr && *t != '\0') {
      o.token = t;
      break;
    }
  }
  return o;
}

std::string hub_url(const std::string& endpoint, const ModelRef& ref) {
  std::string base = endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/" + percent_encode(ref.repo, true) + "/resolve/" + percent_encode(ref.revision, false) + "/" +
         percent_encode(ref.file, true);
}

DownloadResult download(const std::string& url, const fs::path& part, const PullOptions& options,
                        const std::string& label) {
  Downloader d(url, part, options, label);
  return d.run();
}

PullResult pull(Store& store, const ModelRef& ref, const PullOptions& options) {
  PullResult r;
  if (!options.force) {
    const auto existing = store.find(ref.name());
    std::error_code ec;
    if (existing && existing->name == ref.name() && fs::is_regular_file(store.path_of(*existing), ec)) {
      r.entry = *existing;
      r.already_present = true;
      if (options.make_default && !existing->is_default) {
        r.entry = store.set_default(existing->name);
        r.made_default = true;
      }
      return r;
    }
  }
  store.ensure_dirs();
  const fs::path final_path = store.path_for(ref);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec) throw Error(final_path.parent_path().string() + ": cannot create: " + ec.message());
  const std::string url = hub_url(options.endpoint, ref);
  const fs::path part = final_path.string() + ".part";

  const DownloadResult d = download(url, part, options, ref.file);
  try {
    gguf::File::open(part.string());
  } catch (const Error& e) {
    fs::remove(part, ec);
    throw Error(url + ": the download is not a valid GGUF file, removed it (" + e.what() + ")");
  }
  fs::rename(part, final_path, ec);
  if (ec) throw Error(final_path.string() + ": cannot move the download into place: " + ec.message());

  r.entry = {ref.name(), fs::relative(final_path, store.models_dir()).generic_string(), d.size, d.sha256,
             url, false};
  r.made_default = options.make_default || !store.default_model();
  r.entry.is_default = r.made_default;
  r.resumed_from = d.resumed_from;
  store.add(r.entry, r.made_default);
  if (!r.made_default)
    if (const auto e = store.find(ref.name())) r.entry.is_default = e->is_default;
  return r;
}

}  // namespace slm::store
