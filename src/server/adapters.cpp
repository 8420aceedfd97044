// adapters.h: the adapter registry, its name rules and the --lora-dir check.
#include "server/adapters.h"

#include <algorithm>
#include <system_error>

#include "base/error.h"
#include "model/model.h"
#include "server/request.h"

namespace slm::server {

namespace fs = std::filesystem;

namespace {

// True when p (canonical) is dir (canonical) or lies below it.
bool is_inside(const fs::path& p, const fs::path& dir) {
  auto pi = p.begin(), di = dir.begin();
  for (; di != dir.end(); ++di, ++pi) {
    if (di->empty()) continue;  // a trailing separator
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

}  // namespace

std::string adapter_name_problem(std::string_view name) {
  if (name.empty()) return "an adapter name must not be empty";
  if (name.size() > 64) return "an adapter name has at most 64 characters";
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return "an adapter name starts with a letter or a digit";
  for (const char c : name)
    if (!alnum(c) && c != '.' && c != '_' && c != '-')
      return "an adapter name holds only letters, digits, '.', '_' and '-'";
  return {};
}

AdapterSpec parse_adapter_spec(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos) throw Error("--lora: expected NAME=FILE[:SCALE], got '" + arg + "'");
  AdapterSpec s;
  s.name = arg.substr(0, eq);
  if (const std::string why = adapter_name_problem(s.name); !why.empty())
    throw Error("--lora '" + arg + "': " + why);
  s.file = model::parse_lora_argument(arg.substr(eq + 1));
  return s;
}

void AdapterRegistry::set_allowed_dirs(const std::vector<std::string>& dirs) {
  std::vector<fs::path> allowed;
  for (const std::string& d : dirs) {
    std::error_code ec;
    const fs::path c = fs::canonical(d, ec);
    if (ec || !fs::is_directory(c)) throw Error("--lora-dir " + d + ": not an existing folder");
    allowed.push_back(c);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  allowed_ = std::move(allowed);
}

fs::path AdapterRegistry::resolve_runtime_path(const std::string& path) const {
  std::vector<fs::path> allowed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    allowed = allowed_;
  }
  if (allowed.empty())
    throw ApiError(403,
                   "loading adapters at run time is disabled; start the server with --lora-dir DIR",
                   "path", "adapter_loading_disabled", "permission_error");
  if (path.empty()) throw ApiError(400, "'path' must name an adapter file", "path");
  if (path.find('\0') != std::string::npos) throw ApiError(400, "'path' holds a NUL byte", "path");
  std::vector<fs::path> candidates;
  if (fs::path(path).is_absolute()) {
    candidates.emplace_back(path);
  } else {
    for (const fs::path& d : allowed) candidates.push_back(d / path);
  }
  for (const fs::path& c : candidates) {
    std::error_code ec;
    const fs::path real = fs::canonical(c, ec);
    if (ec) continue;
    for (const fs::path& d : allowed)
      if (is_inside(real, d)) {
        if (!fs::is_regular_file(real, ec))
          throw ApiError(400, "'" + path + "' is not a regular file", "path");
        return real;
      }
    throw ApiError(403, "'" + path + "' is outside the folders given by --lora-dir", "path",
                   "path_not_allowed", "permission_error");
  }
  throw ApiError(400, "the adapter file '" + path + "' does not exist", "path", "file_not_found");
}

std::shared_ptr<const AdapterEntry> AdapterRegistry::load(const model::Model& base,
                                                          const std::string& name,
                                                          const std::string& path, float scale,
                                                          bool replace) {
  if (const std::string why = adapter_name_problem(name); !why.empty())
    throw ApiError(400, why, "name");
  if (!(scale > -1e4f && scale < 1e4f))
    throw ApiError(400, "'scale' must be a number in (-1e4, 1e4)", "scale");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (std::find(reserved_.begin(), reserved_.end(), name) != reserved_.end())
      throw ApiError(409, "'" + name + "' is the base model's name", "name", "adapter_exists");
    if (!replace)
      for (const auto& e : entries_)
        if (e->name == name)
          throw ApiError(409,
                         "an adapter named '" + name +
                             "' is loaded; delete it first or send \"replace\": true",
                         "name", "adapter_exists");
  }
  auto e = std::make_shared<AdapterEntry>();
  e->name = name;
  e->path = path;
  e->scale = scale;
  e->created = std::time(nullptr);
  try {
    e->adapter = model::LoraAdapter::load(base, {{path, scale}}, type_);
  } catch (const Error& err) {
    throw ApiError(400, std::string("the adapter does not fit the model: ") + err.what(), "path",
                   "invalid_adapter");
  }
  add(e, replace);
  return e;
}

void AdapterRegistry::add(std::shared_ptr<const AdapterEntry> entry, bool replace) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::find(reserved_.begin(), reserved_.end(), entry->name) != reserved_.end())
    throw ApiError(409, "'" + entry->name + "' is the base model's name", "name", "adapter_exists");
  const auto at = std::lower_bound(entries_.begin(), entries_.end(), entry->name,
                                   [](const auto& e, const std::string& n) { return e->name < n; });
  if (at != entries_.end() && (*at)->name == entry->name) {
    if (!replace)
      throw ApiError(409, "an adapter named '" + entry->name + "' is loaded", "name",
                     "adapter_exists");
    *at = std::move(entry);
  } else {
    entries_.insert(at, std::move(entry));
  }
}

bool AdapterRegistry::remove(std::string_view name) {
  std::shared_ptr<const AdapterEntry> dropped;  // released after the lock
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const auto& e) { return e->name == name; });
  if (it == entries_.end()) return false;
  dropped = std::move(*it);
  entries_.erase(it);
  return true;
}

std::shared_ptr<const AdapterEntry> AdapterRegistry::find(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& e : entries_)
    if (e->name == name) return e;
  return nullptr;
}

std::vector<std::shared_ptr<const AdapterEntry>> AdapterRegistry::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_;
}

void AdapterRegistry::set_reserved(std::vector<std::string> names) {
  std::lock_guard<std::mutex> lock(mutex_);
  reserved_ = std::move(names);
}

}  // namespace slm::server
