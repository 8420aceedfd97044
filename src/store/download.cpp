// The file side of a download: the .part file (locked, and hashed again when
// an earlier run left one, so that the download resumes), writing and hashing
// the body as it arrives, restarting from zero when the server will not
// resume, the retry loop with its backoff, the final size and SHA-256 checks,
// and the progress bar.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "store/download.h"

namespace slm::store::detail {

void ProgressBar::update(uint64_t done, std::optional<uint64_t> total, bool force) {
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

namespace {

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

}  // namespace

Downloader::Downloader(const std::string& url, const std::filesystem::path& part,
                       const PullOptions& options, const std::string& label)
    : url_(url),
      origin_(parse_url(url)),
      part_(part),
      opt_(options),
      bar_(options.progress == PullOptions::Progress::kAlways ||
               (options.progress == PullOptions::Progress::kAuto && ::isatty(STDERR_FILENO)),
           label) {}

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

DownloadResult Downloader::run() {
  open_part();
  FdGuard guard(fd_);
  if (opt_.on_status)
    opt_.on_status(offset_ > 0 ? "resuming " + url_ + " from " + human_bytes(static_cast<double>(offset_))
                               : "downloading " + url_);
  try {
    transfer();
  } catch (...) {
    bar_.finish();
    // An empty .part resumes nothing, and one the server answered with an
    // HTTP error (404, 401, ...) for is not worth keeping.
    if (offset_ == 0 || discard_part_) ::unlink(part_.c_str());
    throw;
  }
  return result_;
}

void Downloader::transfer() {
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
      throw Error(retry_reason_ + (offset_ > 0 ? "; run the command again to resume from byte " +
                                                     std::to_string(offset_)
                                               : std::string()));
    }
    bar_.finish();
    if (opt_.on_status) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%.1f s", delay_ms / 1000.0);
      opt_.on_status(retry_reason_ + "; retrying in " + secs);
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
}

}  // namespace slm::store::detail
