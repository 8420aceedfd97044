// The HTTP side of a download: URLs (parsing, resolving a redirect's
// Location), one request per hop with its headers (the token only for the
// first URL's host, Range to resume), reading the response's status and the
// hub's headers (X-Linked-Etag / X-Linked-Size / ETag, Content-Range),
// deciding from them whether the attempt is done, must be retried or fails,
// and telling why a request got no response (DNS, refused, timeout, TLS).
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
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

NoResponse explain_no_response(httplib::Error error, const Url& url, int connect_timeout_s) {
  using E = httplib::Error;
  const std::string host = url.host;
  switch (error) {
    case E::SSLConnection:
      return {"the TLS handshake with " + host + " failed (a proxy or firewall in the way?)", false};
    case E::SSLServerVerification:
      return {"the TLS certificate of " + host + " could not be verified (is the system clock right?)", false};
    case E::SSLLoadingCerts:
      return {"cannot load the system's CA certificates (install the ca-certificates package)", false};
    case E::ConnectionTimeout:
      return {"connecting to " + url.host_port + " timed out after " + std::to_string(connect_timeout_s) + " s",
              false};
    case E::Connection:
      break;
    default:
      return {"the connection to " + host + " failed (" + httplib::to_string(error) + ")", true};
  }
  // Connect again by hand to tell DNS, refusal, unreachable and timeout apart.
  std::string port = url.scheme == "https" ? "443" : "80";
  const size_t colon = url.host_port.rfind(':');
  if (colon != std::string::npos && url.host_port.find(']', colon) == std::string::npos)
    port = url.host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return {"cannot resolve the host name " + host + " (DNS: " + ::gai_strerror(rc) + ")", false};
  int err = ETIMEDOUT;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    err = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      err = ETIMEDOUT;
      if (::poll(&p, 1, connect_timeout_s * 1000) == 1) {
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
    }
    ::close(fd);
    if (err == 0) break;
  }
  ::freeaddrinfo(res);
  const std::string where = "cannot connect to " + url.host_port + ": ";
  if (err == 0) return {"the connection to " + url.host_port + " failed", true};
  if (err == ECONNREFUSED) return {where + std::strerror(err) + " (nothing listens there)", false};
  if (err == ETIMEDOUT)
    return {where + "no answer within " + std::to_string(connect_timeout_s) + " s (timed out)", false};
  return {where + std::strerror(err), false};
}

std::string Downloader::network_hint() const {
  return "; check the network connection, or set HF_ENDPOINT to a hub or mirror that can be reached (now " +
         opt_.endpoint + "); models already in the store work offline (slm list)";
}

bool Downloader::on_response(const httplib::Response& r) {
  contacted_ = true;
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

void Downloader::fail_status(const std::string& url) {
  discard_part_ = true;
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
    cli.set_connection_timeout(opt_.connect_timeout_s, 0);
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
      const NoResponse why = explain_no_response(res.error(), u, opt_.connect_timeout_s);
      const bool lost = why.transient || contacted_;
      retry_reason_ = "cannot download " + url + ": " + why.cause + (lost ? "" : network_hint());
      // A server never reached in this run is not retried: no network, a
      // wrong HF_ENDPOINT or a TLS problem does not go away in seconds.
      if (!lost) throw Error(retry_reason_);
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
