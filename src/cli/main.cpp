// slm: one binary, many sub-commands (see command.h for how they register).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "base/error.h"
#include "cli/command.h"

namespace slm::cli {

std::vector<Command>& command_registry() {
  static std::vector<Command> commands;
  return commands;
}

namespace {

void print_usage() {
  std::fprintf(stderr, "usage: slm COMMAND [options]\n\ncommands:\n");
  std::vector<Command> sorted = command_registry();
  std::sort(sorted.begin(), sorted.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  for (const Command& c : sorted) std::fprintf(stderr, "  %-12s %s\n", c.name.c_str(), c.summary.c_str());
  std::fprintf(stderr, "\nRun 'slm COMMAND --help' for a command's options.\n");
}

}  // namespace
}  // namespace slm::cli

int main(int argc, char** argv) {
  using namespace slm::cli;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  // A client or server hanging up must surface as a write error on that
  // connection, not kill the process (and every other user's request).
  std::signal(SIGPIPE, SIG_IGN);
  const std::string name = argv[1];
  for (const Command& c : command_registry()) {
    if (c.name != name) continue;
    try {
      return c.run(argc - 2, argv + 2);
    } catch (const slm::Error& e) {
      std::fprintf(stderr, "slm %s: error: %s\n", name.c_str(), e.what());
      return 1;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "slm %s: error: out of memory\n", name.c_str());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "slm %s: error: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "slm: unknown command '%s'\n", name.c_str());
  print_usage();
  return 2;
}
