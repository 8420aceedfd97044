// The named LoRA adapters a server offers beside its base model: given at
// start (`slm serve --lora NAME=FILE[:SCALE]`) or loaded and removed at run
// time (POST /v1/adapters, DELETE /v1/adapters/NAME). A request picks one by
// its "model" field; the engine applies it per sequence, so requests on
// different adapters and on the base share every batched step.
//
// Files loaded at run time must lie inside one of the --lora-dir folders,
// compared as canonical paths (symlinks and ".." resolved), so an API key
// holder cannot make the server read arbitrary files.
//
// Ownership: the registry holds each adapter through a shared_ptr; a request
// copies it into its engine::Request, so removing an adapter only drops the
// registry's reference and requests still using it finish with it. An
// adapter refers to the base Model (lora.h): the registry is a Backend member
// declared after the model, so it is destroyed first.
// Thread-safety: every method may be called from any thread (one mutex);
// loading a file happens outside the lock. The scheduler thread never calls
// it: it only sees the shared_ptrs inside requests.
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "model/lora.h"

namespace slm::model {
class Model;
}

namespace slm::server {

struct AdapterEntry {
  std::string name;  // what requests put in "model"
  std::string path;  // the file (canonical for run-time loads)
  float scale = 1.0f;
  std::time_t created = 0;
  std::shared_ptr<const model::LoraAdapter> adapter;
};

// Names are 1-64 characters of [A-Za-z0-9._-], starting with a letter or a
// digit (they appear in URLs and metric labels). Returns why not, or "".
std::string adapter_name_problem(std::string_view name);

// "NAME=FILE" or "NAME=FILE:SCALE" (`--lora`); throws slm::Error.
struct AdapterSpec {
  std::string name;
  model::LoraFile file;
};
AdapterSpec parse_adapter_spec(const std::string& arg);

class AdapterRegistry {
 public:
  // The --lora-dir folders (must exist; made canonical here, throws
  // slm::Error otherwise). None (the default): run-time loading is refused.
  void set_allowed_dirs(const std::vector<std::string>& dirs);

  // The canonical file a run-time load of path may read, or an ApiError:
  // 403 when loading is disabled or the file is outside every --lora-dir,
  // 400 when it does not exist. A relative path is looked up in each
  // --lora-dir in turn.
  std::filesystem::path resolve_runtime_path(const std::string& path) const;

  // Loads file for base (outside the lock) and adds it as name. Throws
  // ApiError: 400 for a bad name or an adapter that does not fit the model,
  // 409 when the name is taken and replace is false.
  std::shared_ptr<const AdapterEntry> load(const model::Model& base, const std::string& name,
                                           const std::string& path, float scale, bool replace);
  // Adds an entry built elsewhere (tests); same conflicts as load.
  void add(std::shared_ptr<const AdapterEntry> entry, bool replace);
  // Drops name; false when there is none. Requests holding it keep it.
  bool remove(std::string_view name);
  std::shared_ptr<const AdapterEntry> find(std::string_view name) const;
  std::vector<std::shared_ptr<const AdapterEntry>> list() const;  // by name

  // Names the base answers to (model id and aliases): never adapter names.
  void set_reserved(std::vector<std::string> names);
  // How load keeps the factors of what it loads (--lora-type; set before
  // serving starts).
  void set_type(backend::LoraType type) { type_ = type; }

 private:
  mutable std::mutex mutex_;
  std::vector<std::filesystem::path> allowed_;
  std::vector<std::string> reserved_;
  std::vector<std::shared_ptr<const AdapterEntry>> entries_;  // sorted by name
  backend::LoraType type_ = backend::LoraType::kF16;
};

}  // namespace slm::server
