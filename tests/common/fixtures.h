// Locating ../shared/fixtures from tests. A missing folder skips the test
// with the reason, except under CI=true where it is a failure.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace slm::test {

inline std::string fixtures_dir() {
  if (const char* env = std::getenv("SLM_FIXTURES"); env != nullptr && *env != '\0') return env;
  return std::string(SLM_SOURCE_DIR) + "/../shared/fixtures";
}

inline bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Full path of a fixture file, relative to the fixtures folder.
inline std::string fixture(const std::string& rel) { return fixtures_dir() + "/" + rel; }

}  // namespace slm::test

// Use at the top of a test: skips (or fails under CI) when rel is missing.
#define SLM_REQUIRE_FIXTURE(rel)                                                          \
  do {                                                                                    \
    const std::string slm_fixture_path_ = ::slm::test::fixture(rel);                      \
    if (!std::filesystem::exists(slm_fixture_path_)) {                                    \
      if (::slm::test::under_ci()) FAIL() << "missing fixture " << slm_fixture_path_;     \
      GTEST_SKIP() << "fixture not found: " << slm_fixture_path_ << " (set SLM_FIXTURES)"; \
    }                                                                                     \
  } while (0)
