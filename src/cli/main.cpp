// slm: one binary, many sub-commands (see command.h for how they register).
// Owns the top level of the command line: `slm --help` / `slm help [CMD]`,
// `slm --version`, `slm help --flags` (every command's declared flags as one
// Markdown table), and the exit codes: 0 success, 1 a runtime error
// (slm::Error), 2 a usage error (UsageError, unknown command).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "base/cpu.h"
#include "base/error.h"
#include "cli/args.h"
#include "cli/command.h"
#include "kernels/kernels.h"
#include "model/session.h"

#ifndef SLM_VERSION
#define SLM_VERSION "unknown"
#endif
#include "cli/git_commit.h"  // SLM_GIT_COMMIT, written at build time

namespace slm::cli {

std::vector<Command>& command_registry() {
  static std::vector<Command> commands;
  return commands;
}

namespace {

std::vector<Command> sorted_commands() {
  std::vector<Command> sorted = command_registry();
  std::sort(sorted.begin(), sorted.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  return sorted;
}

void print_usage(std::FILE* out) {
  std::fprintf(out, "usage: slm COMMAND [options]\n\ncommands:\n");
  for (const Command& c : sorted_commands())
    std::fprintf(out, "  %-12s %s\n", c.name.c_str(), c.summary.c_str());
  std::fprintf(out,
               "\nRun 'slm COMMAND --help' (or 'slm help COMMAND') for a command's options,\n"
               "'slm help --flags' for every command's flags in one table;\n"
               "'slm --version' for the version, compiler and instruction sets.\n");
}

// A Markdown table cell: '|' escaped, so a help text cannot split the row.
std::string cell(const std::string& s) {
  std::string out;
  for (char ch : s) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
  return out;
}

// `slm help --flags`: one row per flag of every command, from the same
// declarations that parse the command line and print each --help.
void print_flag_table() {
  std::printf("| command | flag | short | default | help |\n|---|---|---|---|---|\n");
  for (const Command& c : sorted_commands()) {
    const Options opts = c.options();
    for (const Opt* o : opts.options()) {
      std::string shorts;
      for (const std::string& s : o->short_forms()) shorts += (shorts.empty() ? "" : ", ") + s;
      const std::string flag = o->name() + (o->meta().empty() ? "" : " " + o->meta());
      std::string help = o->help();
      if (o->is_repeatable()) help += " (repeatable)";
      std::printf("| %s | %s | %s | %s | %s |\n", c.name.c_str(), cell(flag).c_str(),
                  cell(shorts).c_str(), cell(o->default_shown()).c_str(), cell(help).c_str());
    }
  }
}

void print_version() {
  std::printf("slm %s", SLM_VERSION);
  if (std::strlen(SLM_GIT_COMMIT) > 0) std::printf(" (commit %s)", SLM_GIT_COMMIT);
  std::printf("\n");
#if defined(__clang__)
  std::printf("compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
  std::printf("compiler: g++ %s\n", __VERSION__);
#endif
  std::string isas;
  for (const kernels::Isa isa : kernels::available_isas())
    isas += (isas.empty() ? "" : ", ") + std::string(kernels::isa_name(isa));
  std::printf("kernels: %s (compiled in and supported by this CPU); using %s\n", isas.c_str(),
              std::string(kernels::isa_detail(kernels::active_isa())).c_str());
  const CpuFeatures& f = cpu_features();
  std::string cpu;
  for (const auto& [on, name] : {std::pair{f.avx2, "avx2"},
                                 {f.avx512, "avx512"},
                                 {f.avx512_vnni, "avx512-vnni"},
                                 {f.amx_tile, "amx-tile"},
                                 {f.amx_int8, "amx-int8"},
                                 {f.amx_bf16, "amx-bf16"},
                                 {f.neon, "neon"},
                                 {f.dotprod, "dotprod"}})
    if (on) cpu += std::string(cpu.empty() ? "" : " ") + name;
  std::printf("cpu features: %s\n", cpu.empty() ? "(none beyond the baseline)" : cpu.c_str());
}

const Command* find_command(const std::string& name) {
  for (const Command& c : command_registry())
    if (c.name == name) return &c;
  return nullptr;
}

int unknown_command(const std::string& name) {
  std::fprintf(stderr, "slm: unknown command '%s'; see `slm --help`\n", name.c_str());
  return 2;
}

int run_command(const Command& c, int argc, char** argv) {
  const char* name = c.name.c_str();
  try {
    return c.run(argc, argv);
  } catch (const HelpRequest& h) {
    std::fputs(h.text.c_str(), stdout);
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "slm %s: error: %s; see `slm %s --help`\n", name, e.what(), name);
    return 2;
  } catch (const slm::model::ContextBeyondTrainingError& e) {
    std::fprintf(stderr, "slm %s: error: %s (pass --allow-long-context to go beyond it)\n", name,
                 e.what());
    return 1;
  } catch (const slm::Error& e) {
    std::fprintf(stderr, "slm %s: error: %s\n", name, e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "slm %s: error: out of memory\n", name);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "slm %s: error: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace
}  // namespace slm::cli

int main(int argc, char** argv) {
  using namespace slm::cli;
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const std::string first = argv[1];
  if (first == "--help" || first == "-h") {
    print_usage(stdout);
    return 0;
  }
  if (first == "--version" || first == "-V" || first == "version") {
    print_version();
    return 0;
  }
  // A client or server hanging up must surface as a write error on that
  // connection, not kill the process (and every other user's request).
  std::signal(SIGPIPE, SIG_IGN);
  if (first == "help") {
    if (argc < 3) {
      print_usage(stdout);
      return 0;
    }
    if (std::string(argv[2]) == "--flags") {
      print_flag_table();
      return 0;
    }
    const Command* c = find_command(argv[2]);
    if (c == nullptr) return unknown_command(argv[2]);
    char help[] = "--help";
    char* help_argv[] = {help, nullptr};
    return run_command(*c, 1, help_argv);
  }
  const Command* c = find_command(first);
  if (c == nullptr) return unknown_command(first);
  return run_command(*c, argc - 2, argv + 2);
}
