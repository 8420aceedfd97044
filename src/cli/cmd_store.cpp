// slm pull / list / rm / default: the local model store (store/store.h).
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <map>
#include <cstdio>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/format.h"
#include "cli/args.h"
#include "cli/command.h"
#include "gguf/gguf.h"
#include "store/pull.h"
#include "store/store.h"

namespace slm::cli {
namespace {

std::string size_text(uint64_t bytes) { return human_bytes(static_cast<double>(bytes)); }

// What `slm list` shows of a model file beyond its name and size, read from its
// GGUF header (a mapping of the first pages; no weights are read).
struct FileFacts {
  std::string arch = "?", quant = "?", params = "?", date = "?";
};

FileFacts facts_of(const std::filesystem::path& path) {
  FileFacts f;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    const std::time_t t = st.st_mtime;
    std::tm tm{};
    char buf[16];
    if (::localtime_r(&t, &tm) && std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm) > 0) f.date = buf;
  }
  try {
    const auto file = gguf::File::open(path.string());
    if (const auto a = file->get_string("general.architecture")) f.arch = std::string(*a);
    // The quantization is the type holding most of the matrices' bytes (mixes
    // such as Q4_K_M keep some tensors in Q6_K; norms stay F32).
    std::map<DType, uint64_t> bytes;
    int64_t params = 0;
    for (const auto& t : file->tensors()) {
      params += t.n_elements();
      if (t.n_dims >= 2) bytes[t.type] += t.n_bytes;
    }
    if (!bytes.empty())
      f.quant = std::string(dtype_name(std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) {
                                         return a.second < b.second;
                                       })->first));
    f.params = human_count(static_cast<double>(params));
  } catch (const Error&) {
    // An unreadable file still lists, with "?" columns.
  }
  return f;
}

int run_pull(int argc, char** argv) {
  const Args args(argc, argv, {"--revision"}, {"--help", "--default", "--force", "--quiet"},
                  {{"-q", "--quiet"}, {"-f", "--force"}});
  if (args.flag("--help") || args.positional().size() != 1) {
    std::fprintf(args.flag("--help") ? stdout : stderr,
                 "usage: slm pull (REPO/FILE.gguf | REPO[:QUANT]) [--default] [--force] [--quiet] [--revision REV]\n"
                 "  Downloads a GGUF file from the Hugging Face hub into the model store\n"
                 "  ($SLM_HOME, default ~/.local/share/slm), e.g.\n"
                 "    slm pull Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf\n"
                 "    slm pull Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M\n"
                 "  Given a repository, the file whose name carries QUANT is chosen from its listing\n"
                 "  (default: the only one, else Q4_K_M, Q4_0, Q5_K_M, Q8_0).\n"
                 "  An interrupted download resumes where it stopped when run again.\n"
                 "  --default     make it the default model (the first model pulled always is)\n"
                 "  --force       download again even if the store has it\n"
                 "  --quiet       no progress bar (there is none when stderr is not a terminal)\n"
                 "  --revision R  branch, tag or commit (default: main)\n"
                 "  Environment: HF_TOKEN for gated or private repositories; HF_ENDPOINT for a mirror.\n");
    return args.flag("--help") ? 0 : 2;
  }
  const std::string& spec = args.positional()[0];
  const std::optional<store::RepoRef> repo = store::parse_repo_ref(spec);
  store::ModelRef ref = repo ? store::ModelRef{} : store::parse_model_ref(spec);
  if (const auto rev = args.get("--revision")) ref.revision = *rev;
  store::PullOptions options = store::PullOptions::from_environment();
  options.force = args.flag("--force");
  options.make_default = args.flag("--default");
  if (args.flag("--quiet")) {
    options.progress = store::PullOptions::Progress::kNever;
  } else {
    // Said at once, so a slow or dead network is never a silent wait.
    options.on_status = [](const std::string& line) {
      std::fprintf(stderr, "slm pull: %s\n", line.c_str());
      std::fflush(stderr);
    };
  }

  if (repo) {
    store::RepoRef r = *repo;
    r.revision = ref.revision;
    ref = store::resolve_repo(r, options);
  }
  store::Store st = store::Store::open_default();
  const store::PullResult r = store::pull(st, ref, options);
  if (r.already_present) {
    std::printf("%s is already in the store (use --force to download it again)\n", r.entry.name.c_str());
  } else {
    std::printf("pulled %s (%s, sha256 %s)\n", r.entry.name.c_str(), size_text(r.entry.size).c_str(),
                r.entry.sha256.c_str());
  }
  if (r.made_default) std::printf("%s is now the default model\n", r.entry.name.c_str());
  return 0;
}

int run_list(int argc, char** argv) {
  const Args args(argc, argv, {}, {"--help", "--paths"});
  if (args.flag("--help")) {
    std::printf(
        "usage: slm list [--paths]\n"
        "  Models in the store and partial downloads, with architecture, quantization (the\n"
        "  type of most weight bytes), parameters and the file's date; '*' marks the default.\n"
        "  --paths shows where each file is.\n");
    return 0;
  }
  const store::Store st = store::Store::open_default();
  const auto entries = st.list();
  const auto partials = st.partial_downloads();
  if (entries.empty() && partials.empty()) {
    std::printf("no models in %s; download one with 'slm pull REPO/FILE.gguf'\n", st.home().c_str());
    return 0;
  }
  const bool paths = args.flag("--paths");
  size_t width = 4;
  for (const auto& e : entries) width = std::max(width, e.name.size());
  for (const auto& p : partials) width = std::max(width, p.name.size());
  const int w = static_cast<int>(width);
  std::printf("  %-*s  %10s  %-8s  %-7s  %7s  %-10s  %s\n", w, "NAME", "SIZE", "ARCH", "QUANT", "PARAMS", "DATE",
              paths ? "PATH" : "SHA256");
  for (const auto& e : entries) {
    const std::string last = paths ? st.path_of(e).string() : e.sha256.substr(0, 12);
    const FileFacts f = facts_of(st.path_of(e));
    std::printf("%c %-*s  %10s  %-8s  %-7s  %7s  %-10s  %s\n", e.is_default ? '*' : ' ', w, e.name.c_str(),
                size_text(e.size).c_str(), f.arch.c_str(), f.quant.c_str(), f.params.c_str(), f.date.c_str(),
                last.c_str());
  }
  for (const auto& p : partials)
    std::printf("  %-*s  %10s  %-8s  %-7s  %7s  %-10s  %s\n", w, p.name.c_str(), size_text(p.size).c_str(), "",
                "", "", "", paths ? p.path.c_str() : "(partial download)");
  if (!partials.empty())
    std::printf("partial downloads resume with 'slm pull NAME' and are deleted with 'slm rm NAME'\n");
  return 0;
}

int run_rm(int argc, char** argv) {
  const Args args(argc, argv, {}, {"--help"});
  if (args.flag("--help") || args.positional().empty()) {
    std::fprintf(args.flag("--help") ? stdout : stderr,
                 "usage: slm rm NAME...\n  Deletes models and partial downloads from the store (names as 'slm list'\n"
                 "  shows them, or any unique short form such as the file name).\n");
    return args.flag("--help") ? 0 : 2;
  }
  store::Store st = store::Store::open_default();
  for (const std::string& name : args.positional()) {
    if (!st.find(name)) {
      if (const auto p = st.remove_partial(name)) {
        std::printf("removed the partial download %s (%s)\n", p->name.c_str(), size_text(p->size).c_str());
        continue;
      }
    }
    const store::ModelEntry e = st.remove(name);
    std::printf("removed %s (%s)%s\n", e.name.c_str(), size_text(e.size).c_str(),
                e.is_default ? "; there is no default model now" : "");
  }
  return 0;
}

int run_default(int argc, char** argv) {
  const Args args(argc, argv, {}, {"--help"});
  if (args.flag("--help") || args.positional().size() > 1) {
    std::fprintf(args.flag("--help") ? stdout : stderr,
                 "usage: slm default [NAME]\n"
                 "  Sets the model commands use when neither --model nor SLM_MODEL is given;\n"
                 "  without NAME, prints it.\n");
    return args.flag("--help") ? 0 : 2;
  }
  store::Store st = store::Store::open_default();
  if (args.positional().empty()) {
    const auto d = st.default_model();
    if (!d) throw Error("no default model; set one with 'slm default NAME' (see 'slm list')");
    std::printf("%s\n", d->name.c_str());
    return 0;
  }
  const store::ModelEntry e = st.set_default(args.positional()[0]);
  std::printf("%s is now the default model\n", e.name.c_str());
  return 0;
}

}  // namespace

SLM_COMMAND("pull", "download a GGUF model from the Hugging Face hub", run_pull);
SLM_COMMAND("list", "list the models in the store", run_list);
SLM_COMMAND("rm", "delete models from the store", run_rm);
SLM_COMMAND("default", "show or set the default model", run_default);

}  // namespace slm::cli
