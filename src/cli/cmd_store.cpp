// slm pull / list / rm / default: the local model store (store/store.h).
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
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

std::string size_text(uint64_t bytes) {
  return human_bytes(static_cast<double>(bytes));
}

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
      f.quant =
          std::string(dtype_name(std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) {
                                   return a.second < b.second;
                                 })->first));
    f.params = human_count(static_cast<double>(params));
  } catch (const Error&) {
    // An unreadable file still lists, with "?" columns.
  }
  return f;
}

Options pull_options() {
  Options o("pull",
            "usage: slm pull (REPO/FILE.gguf | REPO[:QUANT]) [--default] [--force] [--quiet] "
            "[--revision REV]\n"
            "  Downloads a GGUF file from the Hugging Face hub into the model store\n"
            "  ($SLM_HOME, default ~/.local/share/slm), e.g.\n"
            "    slm pull Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf\n"
            "    slm pull Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M\n"
            "  Given a repository, the file whose name carries QUANT is chosen from its listing\n"
            "  (default: the only one, else Q4_K_M, Q4_0, Q5_K_M, Q8_0).\n"
            "  An interrupted download resumes where it stopped when run again.\n",
            "environment: HF_TOKEN for gated or private repositories; HF_ENDPOINT for a mirror.");
  o.flag("--default", "make it the default model (the first model pulled always is)");
  // No -f: that is --file in every other command.
  o.flag("--force", "download again even if the store has it");
  o.flag("--quiet,-q", "no progress bar (there is none when stderr is not a terminal)");
  o.value("--revision", "REV", "branch, tag or commit").def("main");
  return o;
}

int run_pull(int argc, char** argv) {
  const Args args = pull_options().parse(argc, argv);
  if (args.positional().empty())
    throw UsageError("what to pull is missing: REPO/FILE.gguf or REPO[:QUANT]");
  if (args.positional().size() > 1)
    throw UsageError("unexpected argument '" + args.positional()[1] + "'");
  const std::string& spec = args.positional()[0];
  const std::optional<store::RepoRef> repo = store::parse_repo_ref(spec);
  store::ModelRef ref = repo ? store::ModelRef{} : store::parse_model_ref(spec);
  if (args.has("--revision")) ref.revision = *args.get("--revision");
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
    std::printf("%s is already in the store (use --force to download it again)\n",
                r.entry.name.c_str());
  } else {
    std::printf("pulled %s (%s, sha256 %s)\n", r.entry.name.c_str(),
                size_text(r.entry.size).c_str(), r.entry.sha256.c_str());
  }
  if (r.made_default) std::printf("%s is now the default model\n", r.entry.name.c_str());
  return 0;
}

Options list_options() {
  Options o(
      "list",
      "usage: slm list [--paths]\n"
      "  Models in the store and partial downloads, with architecture, quantization (the\n"
      "  type of most weight bytes), parameters and the file's date; '*' marks the default.\n");
  o.flag("--paths", "show where each file is");
  return o;
}

int run_list(int argc, char** argv) {
  const Args args = list_options().parse(argc, argv);
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const store::Store st = store::Store::open_default();
  const auto entries = st.list();
  const auto partials = st.partial_downloads();
  if (entries.empty() && partials.empty()) {
    std::printf(
        "no models in %s; download one with 'slm pull OWNER/REPO:QUANT' (e.g. slm pull "
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M) or 'slm pull OWNER/REPO/FILE.gguf'\n",
        st.home().c_str());
    return 0;
  }
  const bool paths = args.flag("--paths");
  size_t width = 4;
  for (const auto& e : entries) width = std::max(width, e.name.size());
  for (const auto& p : partials) width = std::max(width, p.name.size());
  const int w = static_cast<int>(width);
  std::printf("  %-*s  %10s  %-8s  %-7s  %7s  %-10s  %s\n", w, "NAME", "SIZE", "ARCH", "QUANT",
              "PARAMS", "DATE", paths ? "PATH" : "SHA256");
  for (const auto& e : entries) {
    const std::string last = paths ? st.path_of(e).string() : e.sha256.substr(0, 12);
    const FileFacts f = facts_of(st.path_of(e));
    std::printf("%c %-*s  %10s  %-8s  %-7s  %7s  %-10s  %s\n", e.is_default ? '*' : ' ', w,
                e.name.c_str(), size_text(e.size).c_str(), f.arch.c_str(), f.quant.c_str(),
                f.params.c_str(), f.date.c_str(), last.c_str());
  }
  for (const auto& p : partials)
    std::printf("  %-*s  %10s  %-8s  %-7s  %7s  %-10s  %s\n", w, p.name.c_str(),
                size_text(p.size).c_str(), "", "", "", "",
                paths ? p.path.c_str() : "(partial download)");
  if (!partials.empty())
    std::printf(
        "partial downloads resume with 'slm pull NAME' and are deleted with 'slm rm NAME'\n");
  return 0;
}

Options rm_options() {
  return Options("rm",
                 "usage: slm rm NAME...\n"
                 "  Deletes models and partial downloads from the store (names as 'slm list'\n"
                 "  shows them, or any unique short form such as the file name).\n");
}

int run_rm(int argc, char** argv) {
  const Args args = rm_options().parse(argc, argv);
  if (args.positional().empty()) throw UsageError("give the NAME of a model to delete");
  store::Store st = store::Store::open_default();
  for (const std::string& name : args.positional()) {
    if (!st.find(name)) {
      if (const auto p = st.remove_partial(name)) {
        std::printf("removed the partial download %s (%s)\n", p->name.c_str(),
                    size_text(p->size).c_str());
        continue;
      }
    }
    const store::ModelEntry e = st.remove(name);
    std::printf("removed %s (%s)%s\n", e.name.c_str(), size_text(e.size).c_str(),
                e.is_default ? "; there is no default model now" : "");
  }
  return 0;
}

Options default_options() {
  return Options("default",
                 "usage: slm default [NAME]\n"
                 "  Sets the model commands use when neither --model nor SLM_MODEL is given;\n"
                 "  without NAME, prints it.\n");
}

int run_default(int argc, char** argv) {
  const Args args = default_options().parse(argc, argv);
  if (args.positional().size() > 1)
    throw UsageError("unexpected argument '" + args.positional()[1] + "'");
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

SLM_COMMAND("pull", "download a GGUF model from the Hugging Face hub", pull_options, run_pull);
SLM_COMMAND("list", "list the models in the store", list_options, run_list);
SLM_COMMAND("rm", "delete models from the store", rm_options, run_rm);
SLM_COMMAND("default", "show or set the default model", default_options, run_default);

}  // namespace slm::cli
