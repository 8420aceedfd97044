#include "cli/args.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace slm::cli {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "%g" without the exponent noise for the ranges help and errors print.
std::string number_text(double x) {
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

// "a, b or c"
std::string one_of(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i)
    s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
  return s;
}

bool parse_integer(const std::string& v, long long* out) {
  errno = 0;
  char* end = nullptr;
  *out = std::strtoll(v.c_str(), &end, 10);
  return !v.empty() && *end == '\0' && errno != ERANGE;
}

bool parse_number(const std::string& v, double* out) {
  char* end = nullptr;
  *out = std::strtod(v.c_str(), &end);
  return !v.empty() && *end == '\0' && std::isfinite(*out);
}

// Checks one value against its declaration; the message names the option as typed.
void validate(Opt::Kind kind, const std::string& typed, const std::string& v, long long ilo,
              long long ihi, double lo, double hi, const std::vector<std::string>& choices) {
  switch (kind) {
    case Opt::Kind::kInteger: {
      long long x = 0;
      if (!parse_integer(v, &x))
        throw UsageError("option " + typed + ": '" + v + "' is not an integer");
      if (x < ilo || x > ihi)
        throw UsageError("option " + typed + ": " + v + " is out of range [" + std::to_string(ilo) +
                         ", " + std::to_string(ihi) + "]");
      break;
    }
    case Opt::Kind::kNumber: {
      double x = 0;
      if (!parse_number(v, &x))
        throw UsageError("option " + typed + ": '" + v + "' is not a number");
      if (x < lo || x > hi)
        throw UsageError("option " + typed + ": " + v + " is out of range [" + number_text(lo) +
                         ", " + number_text(hi) + "]");
      break;
    }
    case Opt::Kind::kChoice:
      if (std::find(choices.begin(), choices.end(), lower(v)) == choices.end())
        throw UsageError("option " + typed + ": expected " + one_of(choices) + ", got '" + v + "'");
      break;
    case Opt::Kind::kFlag:
    case Opt::Kind::kText:
      break;
  }
}

}  // namespace

// ---- Opt ----

Opt& Opt::def(std::string value) {
  default_shown_ = value;
  default_value_ = std::move(value);
  return *this;
}

Opt& Opt::def_note(std::string text) {
  default_shown_ = std::move(text);
  return *this;
}

Opt& Opt::integer(long long lo, long long hi) {
  kind_ = Kind::kInteger;
  int_lo_ = lo;
  int_hi_ = hi;
  return *this;
}

Opt& Opt::number(double lo, double hi) {
  kind_ = Kind::kNumber;
  lo_ = lo;
  hi_ = hi;
  return *this;
}

Opt& Opt::choices(std::vector<std::string> allowed) {
  kind_ = Kind::kChoice;
  for (std::string& c : allowed) c = lower(std::move(c));
  choices_ = std::move(allowed);
  return *this;
}

Opt& Opt::repeatable() {
  repeatable_ = true;
  return *this;
}

Opt& Opt::alias(std::string spelling) {
  aliases_.push_back(std::move(spelling));
  return *this;
}

std::vector<std::string> Opt::short_forms() const {
  std::vector<std::string> v;
  if (!short_.empty()) v.push_back(short_);
  for (const std::string& a : aliases_)
    if (a.rfind("--", 0) != 0) v.push_back(a);
  return v;
}

std::string Opt::spelling() const {
  std::string s;
  for (const std::string& f : short_forms()) s += f + ", ";
  if (name_ != short_)
    s += name_;
  else if (!s.empty())
    s.resize(s.size() - 2);
  if (!meta_.empty()) s += " " + meta_;
  return s;
}

// ---- Options ----

Options::Options(std::string command, std::string usage, std::string notes)
    : command_(std::move(command)),
      usage_(std::move(usage)),
      notes_(std::move(notes)),
      opts_(std::make_shared<std::deque<Opt>>()) {
  help_opt_.names_ = "-h,--help";
  help_opt_.name_ = "--help";
  help_opt_.short_ = "-h";
  help_opt_.help_ = "print this help and exit";
  help_opt_.kind_ = Opt::Kind::kFlag;
}

Options::~Options() = default;
Options::Options(Options&&) noexcept = default;
Options& Options::operator=(Options&&) noexcept = default;

Opt& Options::add(Opt o) {
  // Names are "--long[,-s]" or "-s"; anything else is a slip in a command's declaration.
  std::string first = o.names_, second;
  if (const size_t comma = o.names_.find(','); comma != std::string::npos) {
    first = o.names_.substr(0, comma);
    second = o.names_.substr(comma + 1);
  }
  if (first.rfind("--", 0) == 0) {
    o.name_ = first;
    o.short_ = second;
  } else {
    o.name_ = o.short_ = first;
  }
  if (o.name_.size() < 2 || o.name_[0] != '-' ||
      (!o.short_.empty() && (o.short_.size() != 2 || o.short_[0] != '-')))
    throw std::logic_error("slm " + command_ + ": bad option names '" + o.names_ + "'");
  for (const Opt& other : *opts_)
    if (other.name_ == o.name_ || (!o.short_.empty() && other.short_ == o.short_))
      throw std::logic_error("slm " + command_ + ": option '" + o.names_ + "' declared twice");
  opts_->push_back(std::move(o));
  return opts_->back();
}

Opt& Options::value(const std::string& names, const std::string& meta, const std::string& help) {
  Opt o;
  o.names_ = names;
  o.meta_ = meta.empty() ? "VALUE" : meta;
  o.help_ = help;
  return add(std::move(o));
}

Opt& Options::flag(const std::string& names, const std::string& help) {
  Opt o;
  o.names_ = names;
  o.help_ = help;
  o.kind_ = Opt::Kind::kFlag;
  return add(std::move(o));
}

std::vector<const Opt*> Options::options() const {
  std::vector<const Opt*> v;
  for (const Opt& o : *opts_) v.push_back(&o);
  v.push_back(&help_opt_);
  return v;
}

const Opt* Options::find(const std::string& spelling) const {
  for (const Opt* o : options()) {
    if (o->name_ == spelling || o->short_ == spelling) return o;
    for (const std::string& a : o->aliases_)
      if (a == spelling) return o;
  }
  return nullptr;
}

std::string Options::help() const {
  std::string out = usage_;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "\noptions:\n";
  for (const Opt* o : options()) {
    std::string line = "  " + o->spelling();
    line += line.size() < 28 ? std::string(28 - line.size(), ' ') : "  ";
    line += o->help_;
    if (!o->default_shown_.empty()) line += " (default: " + o->default_shown_ + ")";
    if (o->repeatable_) line += " (repeatable)";
    out += line + "\n";
  }
  if (!notes_.empty()) out += "\n" + notes_ + (notes_.back() == '\n' ? "" : "\n");
  return out;
}

Args Options::parse(int argc, char** argv) {
  // First pass: how each option was spelled (for messages), the several-letter
  // aliases CLI11 cannot take rewritten to the long name, and flags given a
  // value refused. A value option's value is skipped, so `-p --json=x` is a prompt.
  Args args;
  std::vector<std::string> tokens;
  bool values_only = false;
  for (int i = 0; i < argc; ++i) {
    std::string t = argv[i];
    if (values_only || t.size() < 2 || t[0] != '-') {
      tokens.push_back(std::move(t));
      continue;
    }
    if (t == "--") {
      values_only = true;
      tokens.push_back(std::move(t));
      continue;
    }
    const size_t eq = t.rfind("--", 0) == 0 ? t.find('=') : std::string::npos;
    const std::string key = t.substr(0, eq);
    const Opt* o = find(key);
    std::string typed = key;
    bool attached = false;  // -c512
    if (o == nullptr && key[1] != '-') {
      typed = key.substr(0, 2);
      o = find(typed);
      attached = true;
    }
    if (o != nullptr) {
      args.typed_[o->name_] = typed;
      if (o->kind_ == Opt::Kind::kFlag && eq != std::string::npos)
        throw UsageError("option " + typed + " takes no value");
      if (std::find(o->aliases_.begin(), o->aliases_.end(), key) != o->aliases_.end())
        t = o->name_ + (eq == std::string::npos ? "" : t.substr(eq));
      const bool takes_next = o->kind_ != Opt::Kind::kFlag && eq == std::string::npos && !attached;
      tokens.push_back(std::move(t));
      if (takes_next && i + 1 < argc) tokens.push_back(argv[++i]);
      continue;
    }
    tokens.push_back(std::move(t));
  }

  CLI::App app("", "slm " + command_);
  app.allow_extras(true);  // unknown options come back in remaining(), reported below as typed
  app.set_help_flag("-h,--help", help_opt_.help_);
  std::map<std::string, CLI::Option*> bound;
  for (const Opt& o : *opts_) {
    CLI::Option* c =
        o.kind_ == Opt::Kind::kFlag ? app.add_flag(o.names_) : app.add_option(o.names_);
    if (o.kind_ != Opt::Kind::kFlag)
      c->expected(1)->multi_option_policy(
          CLI::MultiOptionPolicy::TakeAll);  // one value per occurrence
    bound[o.name_] = c;
  }
  std::vector<std::string> positional;
  app.add_option("args", positional)->expected(0, CLI::detail::expected_max_vector_size);

  std::vector<std::string> reversed(tokens.rbegin(), tokens.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequest{help()};
  } catch (const CLI::ArgumentMismatch& e) {
    // "--prompt: 1 required TEXT missing": the option ran out of values.
    const std::string what = e.what();
    const Opt* o = find(what.substr(0, what.find(':')));
    if (o == nullptr) throw UsageError(what);
    throw UsageError("option " + args.shown(o->name_) +
                     (o->kind_ == Opt::Kind::kFlag ? " takes no value" : " needs a value"));
  } catch (const CLI::ParseError& e) {
    throw UsageError(e.what());
  }
  for (const std::string& r : app.remaining())
    if (r.size() >= 2 && r[0] == '-' && r != "--") throw UsageError("unknown option " + r);

  args.decls_ = opts_;
  for (const Opt& o : *opts_) {
    Args::Entry& e = args.entries_[o.name_];
    e.decl = &o;
    const CLI::Option* c = bound.at(o.name_);
    e.count = c->count();
    if (o.kind_ == Opt::Kind::kFlag) continue;
    e.values = c->results();
    for (const std::string& v : e.values)
      validate(o.kind_, args.shown(o.name_), v, o.int_lo_, o.int_hi_, o.lo_, o.hi_, o.choices_);
  }
  args.positional_ = std::move(positional);
  return args;
}

// ---- Args ----

const Args::Entry& Args::entry(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end())
    throw std::logic_error("option " + name + " is not declared by this command");
  return it->second;
}

bool Args::has(const std::string& name) const {
  return entry(name).count > 0;
}

std::optional<std::string> Args::get(const std::string& name) const {
  const Entry& e = entry(name);
  if (!e.values.empty()) return e.values.back();  // the last one given wins
  return e.decl->default_value_;
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  return entry(name).values;
}

std::string Args::required_value(const std::string& name) const {
  auto v = get(name);
  if (!v) throw std::logic_error("option " + name + " has no value and no default");
  return *v;
}

long long Args::get_int(const std::string& name) const {
  long long x = 0;
  const std::string v = required_value(name);
  if (!parse_integer(v, &x))
    throw std::logic_error("option " + name + ": default '" + v + "' is not an integer");
  return x;
}

double Args::get_double(const std::string& name) const {
  double x = 0;
  const std::string v = required_value(name);
  if (!parse_number(v, &x))
    throw std::logic_error("option " + name + ": default '" + v + "' is not a number");
  return x;
}

std::string Args::choice(const std::string& name) const {
  return lower(required_value(name));
}

std::string Args::shown(const std::string& name) const {
  const auto it = typed_.find(name);
  return it == typed_.end() ? name : it->second;
}

// ---- options several commands share ----

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

void add_model_option(Options& o, const std::string& help) {
  if (!help.empty()) {
    o.value("--model,-m", "M", help);
    return;
  }
  o.value("--model,-m", "M",
          "a GGUF file or a store name (slm list); also the first positional argument")
      .def_note("$SLM_MODEL, then the store's default");
}

void add_threads_option(Options& o, const std::string& help) {
  o.value("--threads,-t", "N", help).integer(1, 1024).def_note("all cores");
}

int thread_count(const Args& args) {
  if (args.has("--threads")) return static_cast<int>(args.get_int("--threads"));
  const long hw = sysconf(_SC_NPROCESSORS_ONLN);
  return hw > 0 ? static_cast<int>(hw) : 1;
}

void add_lora_option(Options& o) {
  o.value("--lora", "F[:SCALE]", "apply a LoRA adapter (llama.cpp GGUF layout)").repeatable();
  add_lora_type_option(o);
}

void add_lora_type_option(Options& o) {
  o.value("--lora-type", "T",
          "LoRA factors kept as f16, or q8 (8 bits: about half the memory traffic per step, "
          "~1% rms error in the delta)")
      .choices({"f16", "q8"})
      .def("f16");
}

backend::LoraType lora_type_option(const Args& args) {
  return args.choice("--lora-type") == "q8" ? backend::LoraType::kQ8 : backend::LoraType::kF16;
}

void add_prune_options(Options& o) {
  o.value("--sparsity", "FILE",
          "activation pruning: zero small projection inputs with the thresholds of FILE "
          "(`slm prune calibrate`)");
  o.value("--moe-top-k", "K", "mixture of experts: at most K experts per token").integer(1, 1024);
  o.value("--moe-min-weight", "P",
          "mixture of experts: drop chosen experts whose renormalised weight is below P")
      .number(0, 1);
}

void add_kv_type_option(Options& o, DType def) {
  o.value("--kv-type", "T", "KV cache type: f16, f32 or q8_0 (half the memory of f16)")
      .choices({"f32", "f16", "q8_0"})
      .def(lower(std::string(dtype_name(def))));
}

DType kv_type_option(const Args& args) {
  const std::string v = args.choice("--kv-type");
  if (v == "f32") return DType::F32;
  if (v == "q8_0") return DType::Q8_0;
  return DType::F16;
}

void add_draft_options(Options& o) {
  o.value("--draft", "KIND",
          "speculative decoding: none, ngram (drafts from the text's own n-grams) or model "
          "(--draft-model)")
      .choices({"none", "ngram", "model"})
      .def("none");
  o.value("--draft-max", "N",
          "the most draft tokens a step (implies --draft ngram without --draft-model)")
      .integer(1, 32)
      .def("8");
  o.value("--draft-model", "M",
          "speculative decoding with this small model of the same vocabulary (a GGUF file or store "
          "name)");
}

int draft_option(const Args& args) {
  const bool has_model = args.has("--draft-model");
  const std::string kind = args.has("--draft")       ? args.choice("--draft")
                           : has_model               ? "model"
                           : args.has("--draft-max") ? "ngram"
                                                     : "none";
  if (has_model && kind != "model")
    throw UsageError("--draft-model drafts with a model: it cannot go with --draft " + kind);
  if (kind == "model" && !has_model) throw UsageError("--draft model needs --draft-model M");
  if (kind == "none") return 0;
  return static_cast<int>(args.get_int("--draft-max"));
}

}  // namespace slm::cli
