#include "store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "base/error.h"

namespace slm::store {

namespace fs = std::filesystem;

const char* const kNoModelMessage =
    "no model given: pass --model FILE.gguf, set SLM_MODEL, or run 'slm pull REPO/FILE.gguf' "
    "then 'slm default NAME'";

namespace {

constexpr const char* kIndexHeader =
    "# slm model index v1: name, file (relative to this folder), size, sha256, source, default (*)";

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

bool ends_with_gguf(std::string_view s) {
  if (s.size() < 5) return false;
  std::string tail(s.substr(s.size() - 5));
  for (char& c : tail) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return tail == ".gguf";
}

// Owner and repository names on the hub: letters, digits, '-', '_', '.'.
bool valid_repo_part(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

// A segment of the file path: anything printable but '\\' (it becomes a path
// in the store and a field in the tab-separated index).
bool valid_file_part(std::string_view s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') return false;
  return true;
}

// Holds an exclusive flock on models/.lock while the index is rewritten.
class IndexLock {
 public:
  explicit IndexLock(const fs::path& dir) {
    const std::string path = (dir / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd_);
      throw Error(path + ": cannot lock: " + std::strerror(err));
    }
  }
  ~IndexLock() { ::close(fd_); }  // closing releases the lock
  IndexLock(const IndexLock&) = delete;
  IndexLock& operator=(const IndexLock&) = delete;

 private:
  int fd_ = -1;
};

std::string base_name(std::string_view file) {
  const size_t slash = file.rfind('/');
  return std::string(slash == std::string_view::npos ? file : file.substr(slash + 1));
}

std::string strip_gguf(std::string_view s) {
  return std::string(ends_with_gguf(s) ? s.substr(0, s.size() - 5) : s);
}

}  // namespace

fs::path default_home() {
  if (auto h = env("SLM_HOME")) return fs::path(*h);
  if (auto x = env("XDG_DATA_HOME")) return fs::path(*x) / "slm";
  if (auto home = env("HOME")) return fs::path(*home) / ".local" / "share" / "slm";
  throw Error("cannot locate the model store: set SLM_HOME (or HOME)");
}

ModelRef parse_model_ref(std::string_view spec) {
  const std::string form =
      "expected REPO/FILE.gguf, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf";
  std::string_view s = spec;
  for (std::string_view prefix : {"https://huggingface.co/", "http://huggingface.co/", "huggingface.co/",
                                  "https://hf.co/", "hf.co/"}) {
    if (s.substr(0, prefix.size()) == prefix) {
      s.remove_prefix(prefix.size());
      break;
    }
  }
  std::vector<std::string> parts = split(s, '/');
  ModelRef ref;
  // A browser URL: owner/name/(blob|resolve)/REV/file...
  if (parts.size() >= 5 && (parts[2] == "blob" || parts[2] == "resolve")) {
    ref.revision = parts[3];
    parts.erase(parts.begin() + 2, parts.begin() + 4);
  }
  if (parts.size() < 3) throw Error("'" + std::string(spec) + "' names no file: " + form);
  if (!valid_repo_part(parts[0]) || !valid_repo_part(parts[1]))
    throw Error("'" + std::string(spec) + "': invalid repository name: " + form);
  if (!valid_file_part(ref.revision))
    throw Error("'" + std::string(spec) + "': invalid revision '" + ref.revision + "'");
  ref.repo = parts[0] + "/" + parts[1];
  for (size_t i = 2; i < parts.size(); ++i) {
    if (!valid_file_part(parts[i]))
      throw Error("'" + std::string(spec) + "': invalid file path segment '" + parts[i] + "': " + form);
    ref.file += (i > 2 ? "/" : "") + parts[i];
  }
  if (!ends_with_gguf(ref.file))
    throw Error("'" + std::string(spec) + "' is not a .gguf file: " + form);
  return ref;
}

std::optional<RepoRef> parse_repo_ref(std::string_view spec) {
  std::string_view s = spec;
  for (std::string_view prefix : {"https://huggingface.co/", "huggingface.co/", "https://hf.co/", "hf.co/"}) {
    if (s.substr(0, prefix.size()) == prefix) {
      s.remove_prefix(prefix.size());
      break;
    }
  }
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  std::vector<std::string> parts = split(s, '/');
  if (parts.size() != 2) return std::nullopt;  // a file path (or nothing parse_model_ref takes either)
  RepoRef r;
  if (const size_t colon = parts[1].find(':'); colon != std::string::npos) {
    r.quant = parts[1].substr(colon + 1);
    parts[1].resize(colon);
    if (r.quant.empty() || r.quant.size() > 64 || !valid_repo_part(r.quant))
      throw Error("'" + std::string(spec) + "': invalid quantization tag after ':' (e.g. :Q4_K_M)");
  }
  if (!valid_repo_part(parts[0]) || !valid_repo_part(parts[1]))
    throw Error("'" + std::string(spec) + "': invalid repository name (expected OWNER/REPO[:QUANT])");
  r.repo = parts[0] + "/" + parts[1];
  return r;
}

Store::Store(fs::path home) : home_(std::move(home)) {}

fs::path Store::path_for(const ModelRef& ref) const {
  std::string dir = ref.repo;
  const size_t slash = dir.find('/');
  dir.replace(slash, 1, "--");
  return models_dir() / dir / ref.file;
}

void Store::ensure_dirs() const {
  for (const fs::path& d : {home_, models_dir()}) {
    std::error_code ec;
    if (fs::is_directory(d, ec)) continue;
    fs::create_directories(d, ec);
    if (ec) throw Error(d.string() + ": cannot create: " + ec.message());
    // Private by default: the store may hold gated models fetched with a token.
    ::chmod(d.c_str(), 0700);
  }
}

std::vector<ModelEntry> Store::read_index() const {
  std::vector<ModelEntry> entries;
  const fs::path path = index_path();
  std::ifstream in(path);
  if (!in) {
    std::error_code ec;
    if (fs::exists(path, ec)) throw Error(path.string() + ": cannot read");
    return entries;  // an empty store
  }
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = split(line, '\t');
    const std::string where = path.string() + ":" + std::to_string(line_no) + ": ";
    if (f.size() != 6) throw Error(where + "expected 6 tab-separated fields, found " + std::to_string(f.size()));
    ModelEntry e;
    e.name = f[0];
    e.file = f[1];
    try {
      size_t used = 0;
      e.size = std::stoull(f[2], &used);
      if (used != f[2].size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw Error(where + "bad size '" + f[2] + "'");
    }
    e.sha256 = f[3];
    e.source = f[4];
    e.is_default = f[5] == "*";
    // The file must stay inside models/.
    const fs::path rel(e.file);
    bool inside = !e.name.empty() && !e.file.empty() && rel.is_relative();
    for (const fs::path& part : rel)
      if (part == "..") inside = false;
    if (!inside) throw Error(where + "invalid entry '" + e.name + "' -> '" + e.file + "'");
    entries.push_back(std::move(e));
  }
  return entries;
}

void Store::write_index(const std::vector<ModelEntry>& entries) const {
  ensure_dirs();
  const fs::path path = index_path();
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw Error(tmp.string() + ": cannot write");
    out << kIndexHeader << '\n';
    for (const ModelEntry& e : entries)
      out << e.name << '\t' << e.file << '\t' << e.size << '\t' << e.sha256 << '\t' << e.source << '\t'
          << (e.is_default ? "*" : "") << '\n';
    out.flush();
    if (!out) throw Error(tmp.string() + ": write failed");
  }
  // Rename is atomic: a reader sees the old or the new index, never half.
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error(path.string() + ": cannot replace: " + ec.message());
}

long Store::match(const std::vector<ModelEntry>& entries, std::string_view name) {
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].name == name) return static_cast<long>(i);
  std::vector<size_t> hits;
  for (size_t i = 0; i < entries.size(); ++i) {
    const ModelEntry& e = entries[i];
    const std::string_view full = e.name;
    // The part after owner/name/.
    const size_t second = full.find('/', full.find('/') + 1);
    const std::string file(second == std::string_view::npos ? full : full.substr(second + 1));
    const std::string base = base_name(file);
    if (strip_gguf(full) == name || file == name || strip_gguf(file) == name || base == name ||
        strip_gguf(base) == name)
      hits.push_back(i);
  }
  if (hits.empty()) return -1;
  if (hits.size() > 1) {
    std::string list;
    for (size_t i : hits) list += (list.empty() ? "" : ", ") + entries[i].name;
    throw Error("'" + std::string(name) + "' matches several models: " + list + "; use the full name");
  }
  return static_cast<long>(hits[0]);
}

std::vector<ModelEntry> Store::list() const { return read_index(); }

std::optional<ModelEntry> Store::find(std::string_view name) const {
  const std::vector<ModelEntry> entries = read_index();
  const long i = match(entries, name);
  if (i < 0) return std::nullopt;
  return entries[static_cast<size_t>(i)];
}

std::optional<ModelEntry> Store::default_model() const {
  for (ModelEntry& e : read_index())
    if (e.is_default) return std::move(e);
  return std::nullopt;
}

void Store::add(const ModelEntry& e, bool make_default) {
  ensure_dirs();
  IndexLock lock(models_dir());
  std::vector<ModelEntry> entries = read_index();
  bool was_default = false;
  for (auto it = entries.begin(); it != entries.end();) {
    if (it->name == e.name) {
      was_default = it->is_default;
      it = entries.erase(it);
    } else {
      ++it;
    }
  }
  ModelEntry added = e;
  added.is_default = make_default || was_default;
  if (added.is_default)
    for (ModelEntry& other : entries) other.is_default = false;
  entries.push_back(std::move(added));
  write_index(entries);
}

void Store::require_index(std::string_view name, std::string_view empty_hint) const {
  std::error_code ec;
  if (!fs::exists(index_path(), ec))
    throw Error("no model named '" + std::string(name) + "' in the store (it is empty" + std::string(empty_hint) + ")");
}

std::pair<std::vector<ModelEntry>, size_t> Store::read_index_at(std::string_view name) const {
  std::vector<ModelEntry> entries = read_index();
  const long i = match(entries, name);
  if (i < 0) throw Error("no model named '" + std::string(name) + "' in the store (see 'slm list')");
  return {std::move(entries), static_cast<size_t>(i)};
}

ModelEntry Store::remove(std::string_view name) {
  require_index(name, "");
  IndexLock lock(models_dir());
  auto [entries, i] = read_index_at(name);
  std::error_code ec;
  ModelEntry removed = entries[i];
  const fs::path file = path_of(removed);
  fs::remove(file, ec);
  if (ec) throw Error(file.string() + ": cannot remove: " + ec.message());
  entries.erase(entries.begin() + static_cast<std::ptrdiff_t>(i));
  write_index(entries);
  // Drop the now-empty folders up to models/, keeping any partial downloads.
  remove_empty_dirs(file.parent_path());
  return removed;
}

void Store::remove_empty_dirs(fs::path dir) const {
  std::error_code ec;
  for (; dir != models_dir() && dir.has_relative_path(); dir = dir.parent_path()) {
    if (!fs::is_empty(dir, ec) || ec) break;
    fs::remove(dir, ec);
  }
}

std::vector<PartialDownload> Store::partial_downloads() const {
  std::vector<PartialDownload> out;
  std::error_code ec;
  const fs::path dir = models_dir();
  if (!fs::is_directory(dir, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    std::error_code fec;
    if (p.extension() != ".part" || !it->is_regular_file(fec)) continue;
    // models/<owner>--<name>/<file>.part (path_for's layout) -> owner/name/file
    const std::string rel = fs::relative(p, dir, fec).generic_string();
    const size_t sep = rel.find("--"), slash = rel.find('/');
    if (fec || sep == std::string::npos || slash == std::string::npos || sep > slash) continue;
    PartialDownload d;
    d.name = rel.substr(0, sep) + "/" + rel.substr(sep + 2, rel.size() - 5 - (sep + 2));
    d.path = p;
    d.size = it->file_size(fec);
    out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::optional<PartialDownload> Store::remove_partial(std::string_view name) {
  const std::vector<PartialDownload> parts = partial_downloads();
  std::vector<ModelEntry> as_entries;
  for (const PartialDownload& d : parts) as_entries.push_back({d.name, "", d.size, "", "", false});
  const long i = match(as_entries, name);
  if (i < 0) return std::nullopt;
  const PartialDownload& d = parts[static_cast<size_t>(i)];
  // A running pull holds an exclusive lock on its .part (download.cpp).
  const int fd = ::open(d.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    throw Error("'" + d.name + "' is being downloaded by a running slm pull; stop it first");
  }
  std::error_code ec;
  fs::remove(d.path, ec);
  if (fd >= 0) ::close(fd);
  if (ec) throw Error(d.path.string() + ": cannot remove: " + ec.message());
  remove_empty_dirs(d.path.parent_path());
  return d;
}

ModelEntry Store::set_default(std::string_view name) {
  require_index(name, "; run 'slm pull REPO/FILE.gguf'");
  IndexLock lock(models_dir());
  auto [entries, i] = read_index_at(name);
  for (ModelEntry& e : entries) e.is_default = false;
  entries[i].is_default = true;
  write_index(entries);
  return entries[static_cast<size_t>(i)];
}

namespace {

bool is_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

ResolvedModel from_store(const ModelEntry& e, const Store& store, ModelSource source,
                         const std::string& how) {
  ResolvedModel r{store.path_of(e).string(), e.name, source};
  if (!is_file(r.path))
    throw Error("model '" + e.name + "' (" + how + ") is in the store index but its file " + r.path +
                " is missing; run 'slm pull " + e.name + "' again");
  return r;
}

ResolvedModel resolve_spec(const std::string& spec, ModelSource source, const char* how, const Store& store) {
  if (is_file(spec)) return {spec, "", source};
  if (const auto e = store.find(spec)) return from_store(*e, store, source, how);
  std::string hint = "see 'slm list'";
  try {
    const ModelRef ref = parse_model_ref(spec);
    hint = "download it with 'slm pull " + ref.name() + "'";
  } catch (const Error&) {
  }
  throw Error("model '" + spec + "' (" + how + ") is neither a file nor a model in the store; " + hint);
}

}  // namespace

ResolvedModel resolve_model(const std::optional<std::string>& arg, const std::optional<std::string>& env_model,
                            const Store& store) {
  if (arg && !arg->empty()) return resolve_spec(*arg, ModelSource::kArgument, "given on the command line", store);
  if (env_model && !env_model->empty())
    return resolve_spec(*env_model, ModelSource::kEnvironment, "from SLM_MODEL", store);
  if (const auto e = store.default_model()) return from_store(*e, store, ModelSource::kDefault, "the default");
  throw Error(kNoModelMessage);
}

ResolvedModel resolve_model(const std::optional<std::string>& arg) {
  const std::optional<std::string> env_model = env("SLM_MODEL");
  // A plain file needs no store (nor HOME).
  if (arg && is_file(*arg)) return {*arg, "", ModelSource::kArgument};
  if (!(arg && !arg->empty()) && env_model && is_file(*env_model))
    return {*env_model, "", ModelSource::kEnvironment};
  std::optional<Store> store;
  try {
    store.emplace(Store::open_default());
  } catch (const Error&) {
    if (!arg && !env_model) throw Error(kNoModelMessage);
    throw;
  }
  return resolve_model(arg, env_model, *store);
}

}  // namespace slm::store
