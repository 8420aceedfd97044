// Runs the slm binary in a shell for end-to-end tests and captures its
// stdout, stderr and exit code.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace slm::test {

struct CmdResult {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes text to dir/name (test inputs: data, corpora, tasks) and returns the path.
inline std::string write_file(const std::string& dir, const std::string& name,
                              const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::string temp_dir() {
  std::string templ = (std::filesystem::temp_directory_path() / "slm-test-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) return "/tmp";
  return templ;
}

// Single-quotes s for /bin/sh.
inline std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// cmd is a shell fragment run after "SLM_BIN"; stdin comes from stdin_text.
// With limit_s > 0, slm is killed after that many seconds (exit code 124),
// for tests of what used to hang.
inline CmdResult run_slm(const std::string& cmd, const std::string& stdin_text = "",
                         int limit_s = 0) {
  static const std::string dir = temp_dir();
  const std::string in = dir + "/in", out = dir + "/out", err = dir + "/err";
  std::ofstream(in, std::ios::binary) << stdin_text;
  const std::string limit = limit_s > 0 ? "timeout -k 2 " + std::to_string(limit_s) + " " : "";
  const std::string full =
      limit + std::string(SLM_BIN) + " " + cmd + " <" + in + " >" + out + " 2>" + err;
  const int status = std::system(full.c_str());
  CmdResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace slm::test
