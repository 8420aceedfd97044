// Pulling by repository (pull.h: resolve_repo): the hub's model listing
// ({endpoint}/api/models/{repo}/revision/{rev}, whose "siblings" name every
// file) and the choice of one GGUF file in it by quantization tag.
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "store/download.h"
#include "store/pull.h"

namespace slm::store {

namespace {

constexpr size_t kMaxListingBytes = 16u << 20;  // a listing of thousands of files is a few MB
constexpr int kMaxRedirects = 10;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// GET url as text (a small JSON document), following redirects. Errors as
// download() words them: the cause of no response, or the HTTP status.
std::string fetch_text(const std::string& first_url, const PullOptions& opt) {
  const detail::Url origin = detail::parse_url(first_url);
  std::string url = first_url;
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    const detail::Url u = detail::parse_url(url);
    httplib::Client cli(u.scheme + "://" + u.host_port);
    cli.set_follow_location(false);
    cli.set_url_encode(false);
    cli.set_connection_timeout(opt.connect_timeout_s, 0);
    cli.set_read_timeout(opt.timeout_s, 0);
    httplib::Headers headers = {{"User-Agent", "slm"}, {"Accept", "application/json"}};
    if (!opt.token.empty() && u.scheme == origin.scheme && u.host_port == origin.host_port)
      headers.emplace("Authorization", "Bearer " + opt.token);
    std::string body;
    bool too_big = false;
    int status = 0;
    std::string location;
    const httplib::Result res = cli.Get(
        u.target, headers,
        [&](const httplib::Response& r) {
          status = r.status;
          location = r.get_header_value("Location");
          return true;
        },
        [&](const char* d, size_t n) {
          if (body.size() + n > kMaxListingBytes) {
            too_big = true;
            return false;
          }
          body.append(d, n);
          return true;
        });
    if (status == 0) {
      const detail::NoResponse why = detail::explain_no_response(res.error(), u, opt.connect_timeout_s);
      throw Error("cannot list " + url + ": " + why.cause +
                  "; check the network connection, or set HF_ENDPOINT to a hub or mirror that can be reached "
                  "(now " + opt.endpoint + "); models already in the store work offline (slm list)");
    }
    if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
      if (location.empty()) throw Error(url + ": HTTP " + std::to_string(status) + " without a Location");
      url = location.find("://") != std::string::npos ? location
                                                      : u.scheme + "://" + u.host_port + location;
      continue;
    }
    if (status == 404) throw Error("repository not found on the hub: " + url + " (HTTP 404)");
    if (status == 401 || status == 403)
      throw Error("access denied: " + url + " (HTTP " + std::to_string(status) + ")" +
                  (opt.token.empty() ? ": if the repository is gated or private, set HF_TOKEN" : ""));
    if (status != 200) throw Error(url + ": HTTP " + std::to_string(status));
    if (too_big) throw Error(url + ": the listing is larger than " + std::to_string(kMaxListingBytes) + " bytes");
    if (res.error() != httplib::Error::Success)
      throw Error(url + ": the listing was cut short (" + httplib::to_string(res.error()) + ")");
    return body;
  }
  throw Error(first_url + ": more than " + std::to_string(kMaxRedirects) + " redirects");
}

bool is_tag_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// "Qwen2.5-0.5B-Q4_K_M.gguf" has the tag "q4_k_m" but not "q4_k": the tag must
// stand between non-tag characters (so Q4_K is not found inside Q4_K_M).
bool has_tag(const std::string& file, const std::string& tag) {
  const std::string base = lower(file.substr(file.rfind('/') + 1));
  for (size_t at = base.find(tag); at != std::string::npos; at = base.find(tag, at + 1)) {
    const bool left = at == 0 || !is_tag_char(base[at - 1]);
    const size_t end = at + tag.size();
    const bool right = end >= base.size() || !is_tag_char(base[end]);
    if (left && right) return true;
  }
  return false;
}

// "-00002-of-00003.gguf": a later part of a split model.
bool is_split_part(const std::string& file) {
  const std::string l = lower(file);
  const size_t of = l.rfind("-of-");
  if (of == std::string::npos || of < 6 || l[of - 6] != '-') return false;
  return true;
}

std::string list_text(const std::vector<std::string>& files) {
  std::string out;
  for (const std::string& f : files) out += "\n  " + f;
  return out;
}

}  // namespace

std::vector<std::string> list_repo_ggufs(const RepoRef& ref, const PullOptions& options) {
  std::string base = options.endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::string url = base + "/api/models/" + ref.repo + "/revision/" + ref.revision;
  const std::string text = fetch_text(url, options);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw Error(url + ": the listing is not a JSON object");
  const auto sib = j.find("siblings");
  if (sib == j.end() || !sib->is_array()) throw Error(url + ": the listing has no 'siblings' array");
  std::vector<std::string> out;
  for (const auto& s : *sib) {
    if (!s.is_object()) continue;
    const auto name = s.find("rfilename");
    if (name == s.end() || !name->is_string()) continue;
    const std::string f = name->get<std::string>();
    if (f.size() > 5 && lower(f.substr(f.size() - 5)) == ".gguf") out.push_back(f);
  }
  return out;
}

std::string choose_gguf(const std::vector<std::string>& files, const RepoRef& ref) {
  // Projectors (image input) and later parts of split files are not models to run.
  std::vector<std::string> models, split;
  for (const std::string& f : files) {
    if (lower(f).find("mmproj") != std::string::npos) continue;
    (is_split_part(f) ? split : models).push_back(f);
  }
  const std::string where = "repository " + ref.repo;
  if (models.empty() && split.empty()) throw Error(where + " has no GGUF files");
  if (models.empty())
    throw Error(where + " holds only split GGUF files (" + split.front() +
                ", ...), which slm does not load yet; merge them with llama.cpp's gguf-split first");
  std::vector<std::string> matches;
  if (!ref.quant.empty()) {
    const std::string tag = lower(ref.quant);
    for (const std::string& f : models)
      if (has_tag(f, tag)) matches.push_back(f);
    if (matches.empty())
      throw Error(where + " has no GGUF file tagged " + ref.quant + "; it has:" + list_text(models) +
                  "\npull one as " + ref.repo + ":TAG or " + ref.repo + "/FILE.gguf");
  } else if (models.size() == 1) {
    return models.front();
  } else {
    // No tag: the quantization llama.cpp picks by default, then the usual
    // small-but-good ones.
    for (const char* tag : {"q4_k_m", "q4_0", "q5_k_m", "q8_0"}) {
      for (const std::string& f : models)
        if (has_tag(f, tag)) matches.push_back(f);
      if (!matches.empty()) break;
    }
    if (matches.empty())
      throw Error(where + " has several GGUF files; choose one as " + ref.repo + ":TAG or " + ref.repo +
                  "/FILE.gguf:" + list_text(models));
  }
  if (matches.size() > 1)
    throw Error(where + " has several GGUF files tagged " + (ref.quant.empty() ? "alike" : ref.quant) +
                "; name one as " + ref.repo + "/FILE.gguf:" + list_text(matches));
  return matches.front();
}

ModelRef resolve_repo(const RepoRef& ref, const PullOptions& options) {
  if (options.on_status) options.on_status("listing " + ref.repo + " on " + options.endpoint);
  ModelRef m;
  m.repo = ref.repo;
  m.revision = ref.revision;
  m.file = choose_gguf(list_repo_ggufs(ref, options), ref);
  // The name comes from the server: hold it to the rules of a typed one (it
  // becomes a path in the store).
  if (parse_model_ref(m.repo + "/" + m.file).file != m.file)
    throw Error("repository " + ref.repo + ": the listing names a file the store cannot hold: " + m.file);
  return m;
}

}  // namespace slm::store
