// A small command-line parser shared by every slm sub-command: options are
// --long VALUE, --long=VALUE, -s VALUE, or flags; unknown options are errors.
// Every command accepts -h / --help. Mistakes in how a command is called
// throw UsageError, which names the option as the user typed it; main
// prints it with "see `slm CMD --help`" and exits with code 2.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/error.h"

namespace slm::cli {

// The command line is wrong (exit code 2), as opposed to a runtime failure
// such as a missing file (slm::Error, exit code 1).
class UsageError : public Error {
 public:
  using Error::Error;
};

class Args {
 public:
  // value_opts: options that take a value ("--model", "-m"); flag_opts:
  // switches. Aliases map a short spelling to its long name ("-m" -> "--model").
  // "--help" and its alias "-h" are always accepted.
  Args(int argc, char** argv, const std::set<std::string>& value_opts,
       const std::set<std::string>& flag_opts, const std::map<std::string, std::string>& aliases = {});

  bool has(const std::string& name) const { return values_.count(name) > 0 || flags_.count(name) > 0; }
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  // All values of a repeatable option, in order.
  std::vector<std::string> get_all(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // Integer / float values; throw UsageError naming the option when malformed or out of range.
  long long get_int(const std::string& name, long long fallback, long long lo, long long hi) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // The option as the user last typed it ("-n" for --n-predict), for messages.
  std::string shown(const std::string& name) const;

 private:
  std::multimap<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::map<std::string, std::string> typed_;  // long name -> spelling typed last
  std::vector<std::string> positional_;
};

// --kv-type f32|f16|q8_0 (any case): how the KV cache stores keys and values;
// kDefaultKvType when absent. UsageError for anything else.
inline constexpr DType kDefaultKvType = DType::F16;
DType kv_type_option(const Args& args);

// --draft none|ngram and --draft-max N: the most draft tokens per step for
// speculative decoding by prompt lookup (0: off, the default).
int draft_option(const Args& args);

// The model given on the command line: --model M, or else the first
// positional argument (`slm run M "prompt"`, `slm chat M`). The positional
// arguments that remain are in rest; UsageError naming the first extra one
// when there are more than max_rest.
struct ModelArgument {
  std::optional<std::string> spec;
  std::vector<std::string> rest;
};
ModelArgument model_argument(const Args& args, size_t max_rest);

}  // namespace slm::cli
