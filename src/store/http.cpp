// The HTTP side of a download: URLs (parsing, resolving a redirect's
// Location), one request per hop with its headers (the token only for the
// first URL's host, Range to resume), reading the response's status and the
// hub's headers (X-Linked-Etag / X-Linked-Size / ETag, Content-Range), and
// deciding from them whether the attempt is done, must be retried or fails.
#include <httplib.h>

#include <cctype>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "store/download.h"
#include "store/sha256.h"

namespace slm::store::detail {

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

}  // namespace

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

}  // namespace slm::store::detail
