// A small command-line parser shared by every slm sub-command: options are
// --long VALUE, --long=VALUE, -s VALUE, or flags; unknown options are errors.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace slm::cli {

class Args {
 public:
  // value_opts: options that take a value ("--model", "-m"); flag_opts:
  // switches. Aliases map a short spelling to its long name ("-m" -> "--model").
  Args(int argc, char** argv, const std::set<std::string>& value_opts,
       const std::set<std::string>& flag_opts, const std::map<std::string, std::string>& aliases = {});

  bool has(const std::string& name) const { return values_.count(name) > 0 || flags_.count(name) > 0; }
  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  // All values of a repeatable option, in order.
  std::vector<std::string> get_all(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // Integer / float values; throw slm::Error naming the option when malformed or out of range.
  long long get_int(const std::string& name, long long fallback, long long lo, long long hi) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::multimap<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positional_;
};

}  // namespace slm::cli
