// pull.h's entry points: options from the environment, hub URLs, download()
// (which runs a Downloader, download.h) and pull() (download into the store,
// check that the file parses as GGUF, move it into place and record it).
#include "store/pull.h"

#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/error.h"
#include "gguf/gguf.h"
#include "store/download.h"

namespace slm::store {

namespace fs = std::filesystem;

namespace {

std::string percent_encode(std::string_view s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
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
  return base + "/" + percent_encode(ref.repo, true) + "/resolve/" +
         percent_encode(ref.revision, false) + "/" + percent_encode(ref.file, true);
}

DownloadResult download(const std::string& url, const fs::path& part, const PullOptions& options,
                        const std::string& label) {
  detail::Downloader d(url, part, options, label);
  return d.run();
}

PullResult pull(Store& store, const ModelRef& ref, const PullOptions& options) {
  PullResult r;
  if (!options.force) {
    const auto existing = store.find(ref.name());
    std::error_code ec;
    if (existing && existing->name == ref.name() &&
        fs::is_regular_file(store.path_of(*existing), ec)) {
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

  // A pull that leaves nothing to resume (404, refused, not a GGUF) leaves no
  // empty repository folder either: fs::remove takes a folder only when empty,
  // so another file of the repository or a resumable .part keeps it.
  const auto drop_empty_folder = [&] {
    std::error_code ignored;
    fs::remove(final_path.parent_path(), ignored);
  };
  DownloadResult d;
  try {
    d = download(url, part, options, ref.file);
  } catch (...) {
    drop_empty_folder();
    throw;
  }
  try {
    gguf::File::open(part.string());
  } catch (const Error& e) {
    fs::remove(part, ec);
    drop_empty_folder();
    throw Error(url + ": the download is not a valid GGUF file, removed it (" + e.what() + ")");
  }
  fs::rename(part, final_path, ec);
  if (ec)
    throw Error(final_path.string() + ": cannot move the download into place: " + ec.message());

  r.entry = {ref.name(), fs::relative(final_path, store.models_dir()).generic_string(),
             d.size,     d.sha256,
             url,        false};
  r.made_default = options.make_default || !store.default_model();
  r.entry.is_default = r.made_default;
  r.resumed_from = d.resumed_from;
  store.add(r.entry, r.made_default);
  if (!r.made_default)
    if (const auto e = store.find(ref.name())) r.entry.is_default = e->is_default;
  return r;
}

}  // namespace slm::store
