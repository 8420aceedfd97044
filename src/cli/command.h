// Sub-command registry. Each cmd_*.cpp registers itself with SLM_COMMAND, so
// front-end files never need to edit a shared list. A command declares its
// options in one function (args.h) that its run parses argv with, and that
// `slm help --flags` lists; run returns the process exit code; slm::Error
// thrown from it is printed as one line by main.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/args.h"

namespace slm::cli {

struct Command {
  std::string name;
  std::string summary;
  std::function<Options()> options;               // the command's declared flags
  std::function<int(int argc, char** argv)> run;  // argv excludes "slm" and the command name
};

std::vector<Command>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string summary, std::function<Options()> options,
                   std::function<int(int, char**)> fn) {
    command_registry().push_back(
        {std::move(name), std::move(summary), std::move(options), std::move(fn)});
  }
};

}  // namespace slm::cli

#define SLM_CONCAT_INNER(a, b) a##b
#define SLM_CONCAT(a, b) SLM_CONCAT_INNER(a, b)
#define SLM_COMMAND(name, summary, options, fn) \
  static ::slm::cli::CommandRegistrar SLM_CONCAT(slm_command_, __LINE__)(name, summary, options, fn)
