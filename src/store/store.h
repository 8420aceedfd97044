// The local model store: GGUF files downloaded from the hub, kept under
// $SLM_HOME/models/<owner>--<name>/<file> with a small tab-separated index
// (models/index.tsv: name, file, size, sha256, source URL, default mark), and
// the rule that picks the model a command runs.
//
// Layout of $SLM_HOME (default ~/.local/share/slm, created with mode 0700 on
// the first write):
//   models/index.tsv                  the index, rewritten atomically
//   models/.lock                      serialises index updates (flock)
//   models/Qwen--Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf
//   models/...gguf.part               a download in progress or interrupted (see
//                                     pull.h); listed by partial_downloads()
//
// Thread-safety: a Store is a path plus methods that read or rewrite the
// index; updates take an exclusive file lock, so several slm processes may
// pull and edit the store at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slm::store {

// $SLM_HOME, else $XDG_DATA_HOME/slm, else $HOME/.local/share/slm.
// Throws slm::Error when none of these variables is set.
std::filesystem::path default_home();

// A model file on the hub: REPO ("owner/name") and FILE inside it (may contain
// folders), at a revision.
struct ModelRef {
  std::string repo;
  std::string file;
  std::string revision = "main";
  // The store name: "owner/name/file".
  std::string name() const { return repo + "/" + file; }
};

// Parses "owner/name/path/file.gguf"; also accepts a hub URL copied from a
// browser (https://huggingface.co/owner/name/blob/REV/file.gguf or
// .../resolve/REV/...). Rejects "." and ".." segments, control characters and
// backslashes (the name becomes a path) and files not ending in .gguf;
// the slm::Error shows the expected form.
ModelRef parse_model_ref(std::string_view spec);

// A repository without a file, as llama.cpp's -hf takes it: "owner/name" or
// "owner/name:QUANT" (e.g. "Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"); the file
// is chosen from the repository's listing (pull.h: resolve_repo).
struct RepoRef {
  std::string repo;   // "owner/name"
  std::string quant;  // as typed; empty: the default choice
  std::string revision = "main";
};

// A RepoRef when spec has exactly two path segments (plus an optional
// ":QUANT"); nullopt when it names a file (parse_model_ref's form). Throws
// slm::Error for an invalid owner, name or quantization tag.
std::optional<RepoRef> parse_repo_ref(std::string_view spec);

struct ModelEntry {
  std::string name;    // "owner/name/file.gguf"
  std::string file;    // path relative to models/
  uint64_t size = 0;   // bytes
  std::string sha256;  // lower-case hex; empty if unknown
  std::string source;  // URL it was downloaded from
  bool is_default = false;
};

// A download that has not finished: its .part file (see pull.h).
struct PartialDownload {
  std::string name;            // "owner/name/file.gguf", as the finished model will be called
  std::filesystem::path path;  // the .part file
  uint64_t size = 0;           // bytes so far
};

class Store {
 public:
  // Nothing is created until something is written.
  explicit Store(std::filesystem::path home);
  static Store open_default() { return Store(default_home()); }

  const std::filesystem::path& home() const { return home_; }
  std::filesystem::path models_dir() const { return home_ / "models"; }
  // Where ref's file lives in the store, whether or not it is there yet.
  std::filesystem::path path_for(const ModelRef& ref) const;
  std::filesystem::path path_of(const ModelEntry& e) const { return models_dir() / e.file; }
  // Creates home and models/ with mode 0700 when missing.
  void ensure_dirs() const;

  std::vector<ModelEntry> list() const;  // in the order they were added
  // By exact name or by a unique short form: the name without ".gguf", the
  // file part, or the file's base name with or without ".gguf". nullopt when
  // nothing matches; slm::Error listing the candidates when several do.
  std::optional<ModelEntry> find(std::string_view name) const;
  std::optional<ModelEntry> default_model() const;

  // Adds e, replacing an entry of the same name; make_default also makes it
  // the default (the previous default is kept otherwise).
  void add(const ModelEntry& e, bool make_default);
  // Deletes the model's file and its entry (and the default mark with it).
  // Returns the entry; slm::Error when no model has that name.
  ModelEntry remove(std::string_view name);
  // slm::Error when no model has that name.
  ModelEntry set_default(std::string_view name);

  // Unfinished downloads under models/, by name.
  std::vector<PartialDownload> partial_downloads() const;
  // Deletes the .part of the unfinished download matching name (the short
  // forms of find); nullopt when none matches. slm::Error when a running
  // `slm pull` holds it.
  std::optional<PartialDownload> remove_partial(std::string_view name);

 private:
  std::filesystem::path index_path() const { return models_dir() / "index.tsv"; }
  std::vector<ModelEntry> read_index() const;
  void write_index(const std::vector<ModelEntry>& entries) const;
  // Index of the entry matching name (see find) in entries, or -1.
  static long match(const std::vector<ModelEntry>& entries, std::string_view name);
  // Before taking the index lock to change an entry: slm::Error naming name
  // when the store has no index yet (empty_hint says what to do then).
  void require_index(std::string_view name, std::string_view empty_hint) const;
  // Under the index lock: the entries and the position of name in them;
  // slm::Error naming it when nothing matches.
  std::pair<std::vector<ModelEntry>, size_t> read_index_at(std::string_view name) const;
  // Removes the empty folders from dir up to models/ (not models/ itself).
  void remove_empty_dirs(std::filesystem::path dir) const;

  std::filesystem::path home_;
};

enum class ModelSource { kArgument, kEnvironment, kDefault };

struct ResolvedModel {
  std::string path;  // the GGUF file to load
  std::string name;  // store name; empty for a plain file path
  ModelSource source = ModelSource::kArgument;
};

// The model a command runs: arg (--model: a file path or a store name), else
// env_model ($SLM_MODEL, same forms), else the store's default. Throws
// slm::Error whose one line says what to run when there is none, or when a
// name is neither a file nor in the store.
ResolvedModel resolve_model(const std::optional<std::string>& arg,
                            const std::optional<std::string>& env_model, const Store& store);
// Same with $SLM_MODEL and the store at default_home(); the store is only
// consulted when arg / $SLM_MODEL is not an existing file.
ResolvedModel resolve_model(const std::optional<std::string>& arg);

// The message of the error when no model is given anywhere.
extern const char* const kNoModelMessage;

}  // namespace slm::store
