// Readers of multiple-choice task files (tasks.h).
#include "eval/tasks.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace slm::eval {
namespace {

// Splits text into lines (without "\n" and a trailing "\r"); a final line
// without "\n" counts, an empty remainder after the last "\n" does not.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    pos = nl + 1;
  }
  return lines;
}

Error line_error(const std::string& name, size_t line, const std::string& why) {
  return Error(name + ":" + std::to_string(line) + ": " + why);
}

}  // namespace

std::vector<ChoiceTask> parse_hellaswag(std::string_view text, const std::string& name,
                                        int64_t max_tasks) {
  const std::vector<std::string_view> lines = split_lines(text);
  std::vector<ChoiceTask> tasks;
  for (size_t i = 0; i < lines.size(); i += 6) {
    if (max_tasks > 0 && static_cast<int64_t>(tasks.size()) >= max_tasks) break;
    const size_t line = i + 1;
    if (lines.size() - i < 6)
      throw line_error(name, line,
                       "incomplete task: " + std::to_string(lines.size() - i) +
                           " lines left, a HellaSwag task has 6 (context, label, 4 endings)");
    ChoiceTask t;
    t.line = static_cast<int64_t>(line);
    t.context = std::string(lines[i]);
    const std::string_view label = lines[i + 1];
    if (label.size() != 1 || label[0] < '0' || label[0] > '3')
      throw line_error(name, line + 1,
                       "expected the right ending's index 0-3, found '" +
                           std::string(label.substr(0, 40)) + "'");
    t.gold = label[0] - '0';
    for (size_t j = 0; j < 4; ++j) {
      if (lines[i + 2 + j].empty()) throw line_error(name, line + 2 + j, "empty ending");
      t.endings.emplace_back(lines[i + 2 + j]);
    }
    tasks.push_back(std::move(t));
  }
  if (tasks.empty()) throw Error(name + ": no tasks");
  return tasks;
}

std::vector<ChoiceTask> parse_choices_jsonl(std::string_view text, const std::string& name,
                                            int64_t max_tasks) {
  const std::vector<std::string_view> lines = split_lines(text);
  std::vector<ChoiceTask> tasks;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (max_tasks > 0 && static_cast<int64_t>(tasks.size()) >= max_tasks) break;
    if (lines[i].find_first_not_of(" \t") == std::string_view::npos) continue;
    const size_t line = i + 1;
    const nlohmann::json j = nlohmann::json::parse(lines[i], nullptr, false);
    if (j.is_discarded()) throw line_error(name, line, "not valid JSON");
    if (!j.is_object()) throw line_error(name, line, "expected a JSON object");
    ChoiceTask t;
    t.line = static_cast<int64_t>(line);
    const auto ctx = j.find("context");
    if (ctx == j.end() || !ctx->is_string())
      throw line_error(name, line, "\"context\" must be a string");
    t.context = ctx->get<std::string>();
    const auto endings = j.find("endings");
    if (endings == j.end() || !endings->is_array())
      throw line_error(name, line, "\"endings\" must be an array of strings");
    if (endings->size() < 2 || endings->size() > kMaxEndings)
      throw line_error(name, line,
                       "\"endings\" must hold 2 to " + std::to_string(kMaxEndings) + " strings");
    for (const auto& e : *endings) {
      if (!e.is_string()) throw line_error(name, line, "\"endings\" must be an array of strings");
      if (e.get_ref<const std::string&>().empty()) throw line_error(name, line, "empty ending");
      t.endings.push_back(e.get<std::string>());
    }
    const auto label = j.find("label");
    if (label == j.end() || !label->is_number_integer())
      throw line_error(name, line, "\"label\" must be an integer index into \"endings\"");
    const int64_t g =
        label->is_number_unsigned()
            ? static_cast<int64_t>(std::min<uint64_t>(label->get<uint64_t>(), kMaxEndings))
            : label->get<int64_t>();
    if (g < 0 || g >= static_cast<int64_t>(t.endings.size()))
      throw line_error(name, line,
                       "\"label\" " + std::to_string(g) + " is not an index into the " +
                           std::to_string(t.endings.size()) + " endings");
    t.gold = static_cast<int>(g);
    tasks.push_back(std::move(t));
  }
  if (tasks.empty()) throw Error(name + ": no tasks");
  return tasks;
}

}  // namespace slm::eval
