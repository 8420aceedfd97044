// The globals a template can call: jinja2's range, dict and namespace, and
// Hugging Face's raise_exception and strftime_now.
#include <array>
#include <cstdio>
#include <ctime>

#include "chat/runtime.h"

namespace slm::chat {

namespace {

Value range_fn(Runtime& rt, CallArgs& a) {
  auto p = a.bind("range", {"start", "stop", "step"});
  for (const auto& v : p) {
    if (v && !v->is_int() && !v->is_bool()) throw TemplateError("range() takes integers, not " + v->type_name());
  }
  if (!p[0]) throw TemplateError("range() needs at least one argument");
  int64_t start = 0, stop = 0, step = 1;
  if (!p[1]) {
    stop = p[0]->as_int();
  } else {
    start = p[0]->as_int();
    stop = p[1]->as_int();
    if (p[2]) step = p[2]->as_int();
  }
  if (step == 0) throw TemplateError("range() arg 3 must not be zero");
  // The item count, computed in 128 bits so that no argument can overflow it.
  __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  const __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
  const __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
  if (count > static_cast<__int128>(rt.options().max_loop_iterations))
    throw TemplateError("range() of more than " + std::to_string(rt.options().max_loop_iterations) +
                        " items exceeds the template's loop limit");
  rt.check_size(static_cast<std::size_t>(count));
  rt.charge(static_cast<uint64_t>(count));
  std::vector<Value> items;
  items.reserve(static_cast<std::size_t>(count));
  for (__int128 i = 0; i < count; ++i) items.push_back(Value::integer(static_cast<int64_t>(start + i * step)));
  return Value::list(std::move(items));
}

// The entries of the optional one positional argument of dict() and
// namespace(), which must be a dict (not a namespace).
std::vector<std::pair<Value, Value>> dict_argument(const std::string& fn, const CallArgs& a) {
  if (a.positional.size() > 1) throw TemplateError(fn + "() takes at most one positional argument");
  if (a.positional.empty()) return {};
  const Value& src = a.positional[0];
  if (!src.is_dict() || src.is_namespace()) throw TemplateError(fn + "() takes a dict, not " + src.type_name());
  return src.dict_obj().entries;
}

Value dict_fn(Runtime&, CallArgs& a) {
  std::vector<std::pair<Value, Value>> entries = dict_argument("dict", a);
  Value d = Value::dict(std::move(entries));
  std::vector<std::pair<Value, Value>> all = d.dict_obj().entries;
  for (auto& [k, v] : a.named) {
    bool replaced = false;
    for (auto& e : all) {
      if (e.first.is_string() && e.first.str() == k) {
        e.second = v;
        replaced = true;
      }
    }
    if (!replaced) all.emplace_back(Value::string(k), v);
  }
  return Value::dict(std::move(all));
}

Value namespace_fn(Runtime&, CallArgs& a) {
  std::vector<std::pair<Value, Value>> entries = dict_argument("namespace", a);
  for (auto& [k, v] : a.named) entries.emplace_back(Value::string(k), v);
  return Value::make_namespace(std::move(entries));
}

Value raise_exception_fn(Runtime&, CallArgs& a) {
  auto p = a.bind("raise_exception", {"message"});
  throw TemplateError(p[0] ? p[0]->to_string() : std::string("raise_exception() called"), true);
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

CivilTime local_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
}

// C strftime with the C locale, for the codes chat templates use; others are
// copied through. Our own so that untrusted formats never reach libc.
std::string format_time(const CivilTime& t, const std::string& fmt) {
  static constexpr std::array<const char*, 7> kDays = {"Sunday", "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};
  static constexpr std::array<const char*, 12> kMonths = {"January", "February", "March", "April",
                                                          "May", "June", "July", "August",
                                                          "September", "October", "November", "December"};
  const int64_t days = days_from_civil(t.year, t.month, t.day);
  const int weekday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  const int64_t yday = days - days_from_civil(t.year, 1, 1) + 1;
  const int hour12 = t.hour % 12 == 0 ? 12 : t.hour % 12;
  std::string out;
  char buf[32];
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%' || i + 1 >= fmt.size()) {
      out += fmt[i];
      continue;
    }
    char c = fmt[++i];
    const bool no_pad = c == '-' && i + 1 < fmt.size();  // glibc's %-d
    if (no_pad) c = fmt[++i];
    const auto num = [&](long long v, int width) {
      if (no_pad) std::snprintf(buf, sizeof buf, "%lld", v);
      else std::snprintf(buf, sizeof buf, "%0*lld", width, v);
      out += buf;
    };
    switch (c) {
      case 'Y': num(t.year, 4); break;
      case 'y': num(((t.year % 100) + 100) % 100, 2); break;
      case 'm': num(t.month, 2); break;
      case 'd': num(t.day, 2); break;
      case 'e':
        std::snprintf(buf, sizeof buf, "%2d", t.day);
        out += buf;
        break;
      case 'H': num(t.hour, 2); break;
      case 'I': num(hour12, 2); break;
      case 'M': num(t.minute, 2); break;
      case 'S': num(t.second, 2); break;
      case 'j': num(yday, 3); break;
      case 'p': out += t.hour < 12 ? "AM" : "PM"; break;
      case 'A': out += kDays[static_cast<std::size_t>(weekday)]; break;
      case 'a': out.append(kDays[static_cast<std::size_t>(weekday)], 3); break;
      case 'B': out += kMonths[static_cast<std::size_t>(t.month - 1)]; break;
      case 'b':
      case 'h': out.append(kMonths[static_cast<std::size_t>(t.month - 1)], 3); break;
      case 'F':
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", t.year, t.month, t.day);
        out += buf;
        break;
      case 'T':
        std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", t.hour, t.minute, t.second);
        out += buf;
        break;
      case 'u': num(weekday == 0 ? 7 : weekday, 1); break;
      case 'w': num(weekday, 1); break;
      case '%': out += '%'; break;
      default:
        out += '%';
        if (no_pad) out += '-';
        out += c;
    }
  }
  return out;
}

Value strftime_now_fn(Runtime& rt, CallArgs& a) {
  auto p = a.bind("strftime_now", {"format"});
  if (!p[0] || !p[0]->is_string()) throw TemplateError("strftime_now() takes a format string");
  rt.check_size(p[0]->str().size() * 16);
  const CivilTime now = rt.options().now ? *rt.options().now : local_now();
  return Value::string(format_time(now, p[0]->str()));
}

}  // namespace

CivilTime parse_civil_time(std::string_view s) {
  CivilTime t;
  char tail = 0;
  const std::string str(s);
  const int n = std::sscanf(str.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%c", &t.year, &t.month, &t.day, &t.hour,
                            &t.minute, &t.second, &tail);
  const bool ok = (n == 5 || n == 6) && t.month >= 1 && t.month <= 12 && t.day >= 1 && t.day <= 31 &&
                  t.hour >= 0 && t.hour < 24 && t.minute >= 0 && t.minute < 60 && t.second >= 0 && t.second < 61;
  if (!ok) throw slm::Error("malformed time '" + str + "': expected YYYY-MM-DD HH:MM[:SS]");
  if (n == 5) t.second = 0;
  return t;
}

std::optional<Value> global_value(std::string_view name) {
  // Built once; FunctionObjects are immutable, so renders share them across threads.
  static const Value kRange = Value::function("range", range_fn);
  static const Value kDict = Value::function("dict", dict_fn);
  static const Value kNamespace = Value::function("namespace", namespace_fn);
  static const Value kRaise = Value::function("raise_exception", raise_exception_fn);
  static const Value kStrftime = Value::function("strftime_now", strftime_now_fn);
  if (name == "range") return kRange;
  if (name == "dict") return kDict;
  if (name == "namespace") return kNamespace;
  if (name == "raise_exception") return kRaise;
  if (name == "strftime_now") return kStrftime;
  return std::nullopt;
}

}  // namespace slm::chat
