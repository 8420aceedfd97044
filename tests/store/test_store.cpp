// Model store: names, the index, defaults, removal, partial downloads and the
// order in which a command's model is resolved. No network.
#include "store/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "base/error.h"
#include "store/sha256.h"
#include "store/store_test_util.h"

namespace slm::store {
namespace {

using test::ScopedEnv;
using test::TempDir;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Adds a fake model (the store itself does not parse files) and returns its entry.
ModelEntry add_fake(Store& s, const std::string& spec, bool make_default, const std::string& bytes = "GGUF...") {
  const ModelRef ref = parse_model_ref(spec);
  test::write_file(s.path_for(ref), bytes);
  ModelEntry e{ref.name(), std::filesystem::relative(s.path_for(ref), s.models_dir()).generic_string(),
               bytes.size(), std::string(64, 'a'), "http://127.0.0.1/" + ref.name(), false};
  s.add(e, make_default);
  return e;
}

TEST(ModelRef, Parses) {
  const ModelRef r = parse_model_ref("Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf");
  EXPECT_EQ(r.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
  EXPECT_EQ(r.file, "qwen2.5-0.5b-instruct-q4_0.gguf");
  EXPECT_EQ(r.revision, "main");
  EXPECT_EQ(r.name(), "Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf");

  const ModelRef sub = parse_model_ref("owner/repo/Q4_K_M/model-00001.gguf");
  EXPECT_EQ(sub.file, "Q4_K_M/model-00001.gguf");

  const ModelRef url = parse_model_ref("https://huggingface.co/owner/repo/blob/v1.0/dir/m.gguf");
  EXPECT_EQ(url.repo, "owner/repo");
  EXPECT_EQ(url.file, "dir/m.gguf");
  EXPECT_EQ(url.revision, "v1.0");
  EXPECT_EQ(parse_model_ref("hf.co/owner/repo/resolve/main/m.GGUF").file, "m.GGUF");
}

TEST(ModelRef, RejectsBadNames) {
  for (const char* bad : {"owner/repo", "model.gguf", "owner/repo/model.bin", "owner/../x.gguf",
                          "owner/repo/../x.gguf", "owner/repo/./x.gguf", "owner/repo//x.gguf",
                          "ow ner/repo/x.gguf", "owner/repo/a\\b.gguf", "owner/repo/a\tb.gguf",
                          "/owner/repo/x.gguf"}) {
    const std::string msg = error_of([&] { parse_model_ref(bad); });
    EXPECT_NE(msg, "(no error)") << bad;
    EXPECT_NE(msg.find("REPO/FILE.gguf"), std::string::npos) << bad << ": " << msg;
  }
}

TEST(RepoRef, ParsesRepositoriesWithAnOptionalQuantization) {
  const auto r = parse_repo_ref("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
  EXPECT_EQ(r->quant, "Q4_K_M");
  EXPECT_EQ(parse_repo_ref("hf.co/owner/repo")->quant, "");
  EXPECT_EQ(parse_repo_ref("https://huggingface.co/owner/repo/")->repo, "owner/repo");
  // A file path is not a repository.
  EXPECT_FALSE(parse_repo_ref("owner/repo/x.gguf"));
  EXPECT_FALSE(parse_repo_ref("model.gguf"));
  EXPECT_FALSE(parse_repo_ref("owner/repo/Q4_0:x.gguf"));
  for (const char* bad : {"owner/repo:", "own er/repo:Q4_0", "owner/re po", "owner/..:Q4_0", "owner/repo:a b"}) {
    EXPECT_NE(error_of([&] { parse_repo_ref(bad); }), "(no error)") << bad;
  }
}

TEST(Store, HomeComesFromTheEnvironment) {
  {
    ScopedEnv home("SLM_HOME", "/some/where");
    EXPECT_EQ(default_home(), "/some/where");
  }
  ScopedEnv no_home("SLM_HOME", std::nullopt);
  ScopedEnv xdg("XDG_DATA_HOME", std::nullopt);
  ScopedEnv h("HOME", "/home/u");
  EXPECT_EQ(default_home(), "/home/u/.local/share/slm");
}

TEST(Store, CreatesPrivateDirectoriesOnFirstWrite) {
  TempDir tmp;
  Store s(tmp.path() / "home");
  EXPECT_TRUE(s.list().empty());  // reading an absent store creates nothing
  EXPECT_FALSE(std::filesystem::exists(s.home()));
  s.ensure_dirs();
  struct stat st {};
  ASSERT_EQ(::stat(s.home().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(s.models_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(s.path_for(parse_model_ref("a/b/c.gguf")), s.models_dir() / "a--b" / "c.gguf");
}

TEST(Store, IndexRoundTripAndDefault) {
  TempDir tmp;
  Store s(tmp.path());
  add_fake(s, "a/b/one.gguf", false);
  add_fake(s, "a/b/two.gguf", true);
  add_fake(s, "c/d/sub/three.gguf", false);
  auto all = Store(tmp.path()).list();  // a fresh object reads the file
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "a/b/one.gguf");
  EXPECT_EQ(all[2].file, "c--d/sub/three.gguf");
  EXPECT_EQ(all[2].sha256, std::string(64, 'a'));
  EXPECT_EQ(all[0].size, 7u);
  EXPECT_FALSE(all[0].is_default);
  EXPECT_TRUE(all[1].is_default);
  EXPECT_EQ(s.default_model()->name, "a/b/two.gguf");

  s.set_default("one");  // a short name
  EXPECT_EQ(s.default_model()->name, "a/b/one.gguf");
  // Re-adding keeps the default mark unless told otherwise.
  add_fake(s, "a/b/one.gguf", false);
  EXPECT_EQ(s.default_model()->name, "a/b/one.gguf");
  EXPECT_EQ(s.list().size(), 3u);
  EXPECT_NE(error_of([&] { s.set_default("nope"); }).find("no model named 'nope'"), std::string::npos);
}

TEST(Store, FindsShortNamesAndReportsAmbiguity) {
  TempDir tmp;
  Store s(tmp.path());
  add_fake(s, "a/b/model-q4.gguf", false);
  add_fake(s, "c/d/model-q4.gguf", false);
  add_fake(s, "c/d/dir/other.gguf", false);
  EXPECT_EQ(s.find("a/b/model-q4.gguf")->name, "a/b/model-q4.gguf");
  EXPECT_EQ(s.find("a/b/model-q4")->name, "a/b/model-q4.gguf");
  EXPECT_EQ(s.find("other")->name, "c/d/dir/other.gguf");
  EXPECT_EQ(s.find("dir/other.gguf")->name, "c/d/dir/other.gguf");
  EXPECT_FALSE(s.find("missing").has_value());
  const std::string msg = error_of([&] { s.find("model-q4"); });
  EXPECT_NE(msg.find("matches several models"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a/b/model-q4.gguf"), std::string::npos) << msg;
}

TEST(Store, RemoveDeletesTheFileAndTheDefault) {
  TempDir tmp;
  Store s(tmp.path());
  add_fake(s, "a/b/one.gguf", true);
  add_fake(s, "a/b/two.gguf", false);
  const auto path = s.path_of(*s.find("one"));
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(s.remove("one").name, "a/b/one.gguf");
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(s.default_model().has_value());
  EXPECT_EQ(s.list().size(), 1u);
  s.remove("a/b/two.gguf");
  EXPECT_TRUE(s.list().empty());
  EXPECT_FALSE(std::filesystem::exists(s.models_dir() / "a--b"));  // empty folder removed
  EXPECT_NE(error_of([&] { s.remove("one"); }).find("no model named 'one'"), std::string::npos);
}

TEST(Store, PartialDownloadsAreListedAndRemoved) {
  TempDir tmp;
  Store s(tmp.path());
  EXPECT_TRUE(s.partial_downloads().empty());  // no models/ yet
  add_fake(s, "a/b/done.gguf", true);
  const auto part = s.path_for(parse_model_ref("o/r/sub/half.gguf")).string() + ".part";
  test::write_file(part, std::string(1234, 'x'));
  const auto parts = s.partial_downloads();
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "o/r/sub/half.gguf");
  EXPECT_EQ(parts[0].size, 1234u);
  EXPECT_EQ(parts[0].path, part);
  EXPECT_EQ(s.list().size(), 1u);  // the index holds finished models only

  // A running pull holds the lock: the file stays.
  const int fd = ::open(part.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_NE(error_of([&] { s.remove_partial("half"); }).find("being downloaded"), std::string::npos);
  ::close(fd);
  EXPECT_TRUE(std::filesystem::exists(part));

  EXPECT_FALSE(s.remove_partial("done").has_value());  // a finished model is not a partial one
  const auto removed = s.remove_partial("half");
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->name, "o/r/sub/half.gguf");
  EXPECT_FALSE(std::filesystem::exists(part));
  EXPECT_FALSE(std::filesystem::exists(s.models_dir() / "o--r"));  // empty folders removed
  EXPECT_TRUE(s.partial_downloads().empty());
  EXPECT_EQ(s.list().size(), 1u);
}

TEST(Store, MalformedIndexNamesTheLine) {
  TempDir tmp;
  Store s(tmp.path());
  test::write_file(s.models_dir() / "index.tsv", "# header\na\tb\tnot-a-number\t\t\t\n");
  EXPECT_NE(error_of([&] { s.list(); }).find("index.tsv:2: bad size"), std::string::npos);
  test::write_file(s.models_dir() / "index.tsv", "x\t../../etc/passwd\t1\t\t\t\n");
  EXPECT_NE(error_of([&] { s.list(); }).find("invalid entry"), std::string::npos);
  test::write_file(s.models_dir() / "index.tsv", "only\ttwo\n");
  EXPECT_NE(error_of([&] { s.list(); }).find("expected 6"), std::string::npos);
}

TEST(Resolve, OrderIsArgumentThenEnvironmentThenDefault) {
  TempDir tmp;
  Store s(tmp.path() / "home");
  const auto file_a = tmp.path() / "a.gguf";
  const auto file_b = tmp.path() / "b.gguf";
  test::write_file(file_a, "x");
  test::write_file(file_b, "y");
  add_fake(s, "o/r/default-model.gguf", true);
  add_fake(s, "o/r/named.gguf", false);
  const std::string default_path = s.path_of(*s.find("default-model")).string();
  const std::string named_path = s.path_of(*s.find("named")).string();

  // --model wins over everything, as a path or a store name.
  auto r = resolve_model(file_a.string(), file_b.string(), s);
  EXPECT_EQ(r.path, file_a.string());
  EXPECT_EQ(r.source, ModelSource::kArgument);
  EXPECT_EQ(r.name, "");
  r = resolve_model(std::string("named"), file_b.string(), s);
  EXPECT_EQ(r.path, named_path);
  EXPECT_EQ(r.name, "o/r/named.gguf");
  // Then SLM_MODEL.
  r = resolve_model(std::nullopt, file_b.string(), s);
  EXPECT_EQ(r.path, file_b.string());
  EXPECT_EQ(r.source, ModelSource::kEnvironment);
  r = resolve_model(std::nullopt, std::string("o/r/named.gguf"), s);
  EXPECT_EQ(r.path, named_path);
  // Then the store's default.
  r = resolve_model(std::nullopt, std::nullopt, s);
  EXPECT_EQ(r.path, default_path);
  EXPECT_EQ(r.source, ModelSource::kDefault);
  EXPECT_EQ(r.name, "o/r/default-model.gguf");
  // An empty --model / SLM_MODEL counts as absent.
  EXPECT_EQ(resolve_model(std::string(""), std::string(""), s).source, ModelSource::kDefault);
}

TEST(Resolve, NoModelSaysWhatToRun) {
  TempDir tmp;
  Store empty(tmp.path());
  EXPECT_EQ(error_of([&] { resolve_model(std::nullopt, std::nullopt, empty); }),
            "no model given: pass --model FILE.gguf, set SLM_MODEL, or run 'slm pull REPO/FILE.gguf' "
            "then 'slm default NAME'");
  EXPECT_EQ(std::string(kNoModelMessage).find('\n'), std::string::npos);

  // A name that is neither a file nor in the store.
  std::string msg = error_of([&] { resolve_model(std::string("o/r/m.gguf"), std::nullopt, empty); });
  EXPECT_NE(msg.find("neither a file nor a model in the store"), std::string::npos) << msg;
  EXPECT_NE(msg.find("slm pull o/r/m.gguf"), std::string::npos) << msg;
  msg = error_of([&] { resolve_model(std::nullopt, std::string("nothing"), empty); });
  EXPECT_NE(msg.find("from SLM_MODEL"), std::string::npos) << msg;

  // The index names a file that has gone.
  Store s(tmp.path() / "other");
  add_fake(s, "o/r/gone.gguf", true);
  std::filesystem::remove(s.path_of(*s.find("gone")));
  msg = error_of([&] { resolve_model(std::nullopt, std::nullopt, s); });
  EXPECT_NE(msg.find("is missing; run 'slm pull o/r/gone.gguf' again"), std::string::npos) << msg;
}

TEST(Resolve, ReadsSlmModelAndSlmHome) {
  TempDir tmp;
  ScopedEnv home("SLM_HOME", tmp.path().string());
  Store s(tmp.path());
  add_fake(s, "o/r/def.gguf", true);
  const auto file = tmp.path() / "x.gguf";
  test::write_file(file, "x");
  {
    ScopedEnv model("SLM_MODEL", std::nullopt);
    EXPECT_EQ(resolve_model(std::nullopt).name, "o/r/def.gguf");
    EXPECT_EQ(resolve_model(file.string()).path, file.string());
  }
  ScopedEnv model("SLM_MODEL", file.string());
  EXPECT_EQ(resolve_model(std::nullopt).path, file.string());
  EXPECT_EQ(resolve_model(std::string("def")).name, "o/r/def.gguf");
}

TEST(Sha256, KnownDigests) {
  Sha256 h;
  EXPECT_EQ(h.hex_digest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  h.update("abc", 3);
  EXPECT_EQ(h.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  TempDir tmp;
  test::write_file(tmp.path() / "f", "abc");
  EXPECT_EQ(sha256_file((tmp.path() / "f").string()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(is_sha256_hex(std::string(64, 'F')));
  EXPECT_FALSE(is_sha256_hex(std::string(40, 'a')));
  EXPECT_FALSE(is_sha256_hex(std::string(63, 'a') + "g"));
}

}  // namespace
}  // namespace slm::store
