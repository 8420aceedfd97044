// Every real chat template in ../shared/fixtures/templates against every
// conversation of cases.json: the output must match what Hugging Face's
// jinja2 setup rendered, byte for byte, and where that failed ("ERROR: msg")
// slm must fail with the same message.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "chat/template.h"
#include "common/fixtures.h"

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

const char* const kTemplatesDir = "templates";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> template_names() {
  std::vector<std::string> names;
  const fs::path dir = slm::test::fixture(std::string(kTemplatesDir) + "/src");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".jinja") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("missing");  // the test then skips (or fails under CI)
  return names;
}

class FixtureTemplate : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureTemplate, RendersEveryCaseAsJinja2) {
  SLM_REQUIRE_FIXTURE(std::string(kTemplatesDir) + "/cases.json");
  SLM_REQUIRE_FIXTURE(std::string(kTemplatesDir) + "/src/" + GetParam() + ".jinja");
  const fs::path root = slm::test::fixture(kTemplatesDir);
  const Json cases = Json::parse(read_file(root / "cases.json"));
  const slm::chat::Template tmpl(read_file(root / "src" / (GetParam() + ".jinja")));
  slm::chat::RenderOptions opts;
  opts.now = slm::chat::parse_civil_time(cases["strftime_now_fixed"].get<std::string>());

  int checked = 0;
  for (auto it = cases["cases"].begin(); it != cases["cases"].end(); ++it) {
    const fs::path expected_path = root / "expected" / GetParam() / (it.key() + ".txt");
    if (!fs::exists(expected_path)) continue;  // not every template has every case
    SCOPED_TRACE("case " + it.key());
    const Json& c = it.value();
    slm::chat::ChatInput input;
    input.messages = c["messages"];
    if (c.contains("tools")) input.tools = c["tools"];
    input.add_generation_prompt = c.value("add_generation_prompt", false);
    input.bos_token = cases["bos_token"].get<std::string>();
    input.eos_token = cases["eos_token"].get<std::string>();
    const Json ctx = slm::chat::make_chat_context(input);
    const std::string expected = read_file(expected_path);
    ++checked;
    const std::string kErr = "ERROR: ";
    if (expected.compare(0, kErr.size(), kErr) == 0) {
      std::string message = expected.substr(kErr.size());
      while (!message.empty() && message.back() == '\n') message.pop_back();
      try {
        const std::string out = tmpl.render(ctx, opts);
        ADD_FAILURE() << "rendered where jinja2 failed with: " << message << "\noutput:\n" << out;
      } catch (const slm::chat::TemplateError& e) {
        EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
            << "error '" << e.what() << "' does not carry '" << message << "'";
      }
    } else {
      try {
        EXPECT_EQ(tmpl.render(ctx, opts), expected);
      } catch (const slm::chat::TemplateError& e) {
        ADD_FAILURE() << "render failed: " << e.what();
      }
    }
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Templates, FixtureTemplate, ::testing::ValuesIn(template_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
