#include "cli/args.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace slm::cli {

Args::Args(int argc, char** argv, const std::set<std::string>& value_opts,
           const std::set<std::string>& flag_opts, const std::map<std::string, std::string>& aliases) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() < 2 || a[0] != '-' || a == "--") {
      if (a == "--") {
        for (++i; i < argc; ++i) positional_.push_back(argv[i]);
        break;
      }
      positional_.push_back(a);
      continue;
    }
    std::optional<std::string> inline_value;
    const size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    const std::string typed = a;
    if (auto it = aliases.find(a); it != aliases.end()) {
      a = it->second;
    } else if (a == "-h") {
      a = "--help";
    }
    if (value_opts.count(a)) {
      if (inline_value) {
        values_.emplace(a, *inline_value);
      } else {
        if (i + 1 >= argc) throw UsageError("option " + typed + " needs a value");
        values_.emplace(a, argv[++i]);
      }
    } else if (flag_opts.count(a) || a == "--help") {
      if (inline_value) throw UsageError("option " + typed + " takes no value");
      flags_.insert(a);
    } else {
      throw UsageError("unknown option " + typed);
    }
    typed_[a] = typed;
  }
}

std::string Args::shown(const std::string& name) const {
  const auto it = typed_.find(name);
  return it == typed_.end() ? name : it->second;
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto range = values_.equal_range(name);
  if (range.first == range.second) return std::nullopt;
  auto last = range.second;
  --last;
  return last->second;  // the last one given wins
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  std::vector<std::string> out;
  auto range = values_.equal_range(name);
  for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
  return out;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

long long Args::get_int(const std::string& name, long long fallback, long long lo, long long hi) const {
  auto v = get(name);
  if (!v) return fallback;
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    throw UsageError("option " + shown(name) + ": '" + *v + "' is not an integer");
  if (x < lo || x > hi)
    throw UsageError("option " + shown(name) + ": " + *v + " is out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return x;
}

double Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(x))
    throw UsageError("option " + shown(name) + ": '" + *v + "' is not a number");
  return x;
}

ModelArgument model_argument(const Args& args, size_t max_rest) {
  ModelArgument m;
  m.spec = args.get("--model");
  const std::vector<std::string>& pos = args.positional();
  size_t first = 0;
  if (!m.spec && !pos.empty()) m.spec = pos[first++];
  m.rest.assign(pos.begin() + static_cast<std::ptrdiff_t>(first), pos.end());
  if (m.rest.size() > max_rest) throw UsageError("unexpected argument '" + m.rest[max_rest] + "'");
  return m;
}

DType kv_type_option(const Args& args) {
  const auto v = args.get("--kv-type");
  if (!v) return kDefaultKvType;
  std::string l = *v;
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "f32") return DType::F32;
  if (l == "f16") return DType::F16;
  if (l == "q8_0") return DType::Q8_0;
  throw UsageError(args.shown("--kv-type") + ": expected f32, f16 or q8_0, got '" + *v + "'");
}

int draft_option(const Args& args) {
  const std::string kind = args.get_or("--draft", args.has("--draft-max") ? "ngram" : "none");
  if (kind == "none") return 0;
  if (kind != "ngram")
    throw UsageError(args.shown("--draft") + ": expected none or ngram, got '" + kind +
                     "' (a draft model is not supported yet)");
  return static_cast<int>(args.get_int("--draft-max", 8, 1, 32));
}

}  // namespace slm::cli
