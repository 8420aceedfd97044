// `slm pull` against local HTTP servers on 127.0.0.1 (an httplib::Server in a
// thread), serving a real GGUF fixture: full download, a transfer cut midway
// and resumed with Range (within one call and across two), published sha256
// and size checks, hub error messages, the bearer token, redirects to a CDN.
// Nothing here reaches a non-loopback address.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/error.h"
#include "common/fixtures.h"
#include "store/pull.h"
#include "store/sha256.h"
#include "store/store.h"
#include "store/store_test_util.h"

namespace slm::store {
namespace {

using test::ScopedEnv;
using test::TempDir;

constexpr const char* kSpec = "test-owner/tiny-GGUF/stories260K.gguf";
constexpr const char* kFilePath = "/test-owner/tiny-GGUF/resolve/main/stories260K.gguf";

struct Seen {
  std::string path, range, authorization;
};

// Serves one file the way the hub (or its CDN) does; behaviour is set per test.
class FileServer {
 public:
  explicit FileServer(std::string body, std::string file_path = kFilePath)
      : body_(std::move(body)), file_path_(std::move(file_path)) {
    server_.Get(".*",
                [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FileServer() {
    server_.stop();
    thread_.join();
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }

  // Behaviour knobs (set before the download starts).
  int forced_status = 0;      // answer every request with this status
  std::string error_message;  // X-Error-Message with forced_status
  size_t cut_after =
      std::string::npos;    // the next body stops after this many bytes, connection dropped
  int cuts_left = 1;        // how many responses are cut
  std::string etag;         // sent as ETag (quoted)
  std::string redirect_to;  // answer the file path with 302 to this URL
  std::string linked_etag;  // X-Linked-Etag on the redirect
  std::optional<uint64_t> linked_size;  // X-Linked-Size on the redirect
  bool ignore_range = false;  // answer 200 with the whole file even when asked for a range
  std::string listing;        // JSON answered on /api/models/... (the hub's listing)

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    // httplib 0.11 applies Range by itself, even to error statuses and past
    // the end of the file; clearing its parsed ranges lets this handler answer
    // exactly as the hub or a CDN would. (The request object is not const.)
    const_cast<httplib::Request&>(req).ranges.clear();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      seen_.push_back(
          {req.path, req.get_header_value("Range"), req.get_header_value("Authorization")});
    }
    if (forced_status != 0) {
      res.status = forced_status;
      if (!error_message.empty()) res.set_header("X-Error-Message", error_message);
      res.set_content("error page", "text/plain");
      return;
    }
    if (!listing.empty() && req.path.rfind("/api/models/", 0) == 0) {
      if (req.path != "/api/models/test-owner/tiny-GGUF/revision/main") {
        res.status = 404;
        res.set_content(R"({"error":"Repository not found"})", "application/json");
      } else {
        res.set_content(listing, "application/json");
      }
      return;
    }
    if (!redirect_to.empty()) {
      res.status = 302;
      res.set_header("Location", redirect_to);
      if (!linked_etag.empty()) res.set_header("X-Linked-Etag", "\"" + linked_etag + "\"");
      if (linked_size) res.set_header("X-Linked-Size", std::to_string(*linked_size));
      return;
    }
    if (req.path != file_path_) {
      res.status = 404;
      res.set_content("Entry not found", "text/plain");
      return;
    }
    uint64_t start = 0;
    const std::string range = req.get_header_value("Range");
    const bool partial = !range.empty() && !ignore_range;
    if (partial) {
      start = std::stoull(range.substr(6));  // "bytes=N-"
      if (start >= body_.size()) {
        res.status = 416;
        if (!etag.empty()) res.set_header("ETag", "\"" + etag + "\"");
        res.set_header("Content-Range", "bytes */" + std::to_string(body_.size()));
        return;
      }
      res.set_header("Content-Range", "bytes " + std::to_string(start) + "-" +
                                          std::to_string(body_.size() - 1) + "/" +
                                          std::to_string(body_.size()));
    }
    res.status = partial ? 206 : 200;
    if (!etag.empty()) res.set_header("ETag", "\"" + etag + "\"");
    size_t limit = std::string::npos;
    if (cut_after != std::string::npos && cuts_left > 0) {
      --cuts_left;
      limit = cut_after;
    }
    res.set_content_provider(body_.size() - start, "application/octet-stream",
                             [this, start, limit](size_t off, size_t len, httplib::DataSink& sink) {
                               if (off >= limit) return false;  // drop the connection midway
                               const size_t n = std::min({len, size_t{65536}, limit - off});
                               sink.write(body_.data() + start + off, n);
                               return true;
                             });
  }

  std::string body_;
  std::string file_path_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Seen> seen_;
};

class Pull : public ::testing::Test {
 protected:
  void SetUp() override {
    SLM_REQUIRE_FIXTURE("models/stories260K.gguf");
    model_ = test::read_file(test::fixture("models/stories260K.gguf"));
    sha_ = sha256_file(test::fixture("models/stories260K.gguf"));
    options_.progress = PullOptions::Progress::kNever;
    options_.retry_delay_ms = 0;
    options_.timeout_s = 10;
  }
  std::string error_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }

  TempDir tmp_;
  Store store_{tmp_.path() / "home"};
  std::string model_, sha_;
  PullOptions options_;
  ModelRef ref_ = parse_model_ref(kSpec);
};

TEST_F(Pull, FullDownload) {
  FileServer hub(model_);
  hub.etag = sha_;
  options_.endpoint = hub.base();
  const PullResult r = pull(store_, ref_, options_);
  EXPECT_FALSE(r.already_present);
  EXPECT_TRUE(r.made_default);  // the first model becomes the default
  EXPECT_EQ(r.entry.name, kSpec);
  EXPECT_EQ(r.entry.size, model_.size());
  EXPECT_EQ(r.entry.sha256, sha_);
  EXPECT_EQ(r.entry.source, hub.base() + kFilePath);
  const auto path = store_.models_dir() / "test-owner--tiny-GGUF" / "stories260K.gguf";
  EXPECT_EQ(test::read_file(path), model_);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".part"));
  ASSERT_EQ(store_.list().size(), 1u);
  EXPECT_EQ(store_.default_model()->name, kSpec);
  ASSERT_EQ(hub.seen().size(), 1u);
  EXPECT_EQ(hub.seen()[0].range, "");
  EXPECT_EQ(hub.seen()[0].authorization, "");

  // A second pull finds it in the store and downloads nothing.
  const PullResult again = pull(store_, ref_, options_);
  EXPECT_TRUE(again.already_present);
  EXPECT_EQ(hub.seen().size(), 1u);
  options_.force = true;
  EXPECT_FALSE(pull(store_, ref_, options_).already_present);
  EXPECT_EQ(hub.seen().size(), 2u);
}

TEST_F(Pull, CutTransferResumesWithRangeInOneCall) {
  FileServer hub(model_);
  hub.cut_after = 300000;
  hub.etag = sha_;
  options_.endpoint = hub.base();
  const PullResult r = pull(store_, ref_, options_);
  EXPECT_EQ(test::read_file(store_.path_of(r.entry)), model_);
  EXPECT_EQ(r.entry.sha256, sha_);
  const auto seen = hub.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].range, "");
  EXPECT_EQ(seen[1].range, "bytes=300000-");
}

TEST_F(Pull, InterruptedPullResumesInTheNextRun) {
  FileServer hub(model_);
  hub.cut_after = 500000;
  hub.etag = sha_;
  options_.endpoint = hub.base();
  options_.max_retries = 0;
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("run the command again to resume from byte 500000"), std::string::npos) << msg;
  const auto part = store_.path_for(ref_).string() + ".part";
  ASSERT_EQ(std::filesystem::file_size(part), 500000u);
  EXPECT_TRUE(store_.list().empty());

  const PullResult r = pull(store_, ref_, options_);
  EXPECT_EQ(r.resumed_from, 500000u);
  EXPECT_EQ(test::read_file(store_.path_of(r.entry)), model_);
  EXPECT_EQ(r.entry.sha256, sha_);
  EXPECT_EQ(hub.seen().back().range, "bytes=500000-");
}

TEST_F(Pull, CompletePartFileFromAnEarlierRunIsKept) {
  // The earlier run got every byte but stopped before moving the file.
  test::write_file(store_.path_for(ref_).string() + ".part", model_);
  FileServer hub(model_);
  hub.etag = sha_;
  options_.endpoint = hub.base();
  const PullResult r = pull(store_, ref_, options_);
  EXPECT_EQ(hub.seen().back().range, "bytes=" + std::to_string(model_.size()) + "-");
  EXPECT_EQ(test::read_file(store_.path_of(r.entry)), model_);
}

TEST_F(Pull, PartLongerThanTheFileStartsOver) {
  // The file on the hub got shorter since the interrupted run: 416, then a fresh download.
  test::write_file(store_.path_for(ref_).string() + ".part", model_ + "extra");
  FileServer hub(model_);
  hub.etag = sha_;
  options_.endpoint = hub.base();
  options_.max_retries = 0;
  const PullResult r = pull(store_, ref_, options_);
  EXPECT_EQ(test::read_file(store_.path_of(r.entry)), model_);
  const auto seen = hub.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].range, "");
}

TEST_F(Pull, CompletePartWithWrongContentIsRefused) {
  std::string corrupt = model_;
  corrupt[1000] ^= 1;
  test::write_file(store_.path_for(ref_).string() + ".part", corrupt);
  FileServer hub(model_);
  hub.etag = sha_;  // sent with the 416 as well
  options_.endpoint = hub.base();
  EXPECT_NE(error_of([&] { pull(store_, ref_, options_); }).find("sha256 mismatch"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(store_.path_for(ref_).string() + ".part"));
}

TEST_F(Pull, ServerIgnoringRangeRestartsFromZero) {
  test::write_file(store_.path_for(ref_).string() + ".part", std::string(1000, 'z'));
  FileServer hub(model_);
  hub.ignore_range = true;
  options_.endpoint = hub.base();
  const PullResult r = pull(store_, ref_, options_);
  EXPECT_EQ(r.resumed_from, 0u);
  EXPECT_EQ(test::read_file(store_.path_of(r.entry)), model_);
  EXPECT_EQ(r.entry.sha256, sha_);
}

TEST_F(Pull, WrongSha256IsRefused) {
  FileServer hub(model_);
  hub.etag = std::string(64, '0');
  options_.endpoint = hub.base();
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("sha256 mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find(hub.base() + kFilePath), std::string::npos) << msg;
  EXPECT_NE(msg.find(sha_), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(store_.path_for(ref_)));
  EXPECT_FALSE(std::filesystem::exists(store_.path_for(ref_).string() + ".part"));
  EXPECT_TRUE(store_.list().empty());
}

TEST_F(Pull, NonShaEtagIsNotChecked) {
  FileServer hub(model_);
  hub.etag = "0123456789abcdef0123456789abcdef01234567";  // a git blob id, 40 digits
  options_.endpoint = hub.base();
  EXPECT_EQ(pull(store_, ref_, options_).entry.sha256, sha_);
}

TEST_F(Pull, RedirectToCdnCarriesHubChecksAndDropsTheToken) {
  FileServer cdn(model_, "/blobs/xyz");
  FileServer hub(model_);
  hub.redirect_to = cdn.base() + "/blobs/xyz";
  hub.linked_etag = sha_;
  hub.linked_size = model_.size();
  options_.endpoint = hub.base();
  options_.token = "hf_secret";
  const PullResult r = pull(store_, ref_, options_);
  EXPECT_EQ(test::read_file(store_.path_of(r.entry)), model_);
  EXPECT_EQ(hub.seen().at(0).authorization, "Bearer hf_secret");
  EXPECT_EQ(cdn.seen().at(0).authorization, "");  // the token stays with the hub

  // The sha256 the hub published on its redirect is enforced.
  hub.linked_etag = std::string(64, 'e');
  options_.force = true;
  EXPECT_NE(error_of([&] { pull(store_, ref_, options_); }).find("sha256 mismatch"),
            std::string::npos);
  // And so is its size.
  hub.linked_etag = "";
  hub.linked_size = model_.size() + 1;
  EXPECT_NE(error_of([&] { pull(store_, ref_, options_); }).find("size mismatch"),
            std::string::npos);
}

TEST_F(Pull, TokenFromHfTokenIsSentAsBearer) {
  FileServer hub(model_);
  ScopedEnv token("HF_TOKEN", "hf_abc123");
  ScopedEnv endpoint("HF_ENDPOINT", hub.base() + "/");
  PullOptions o = PullOptions::from_environment();
  EXPECT_EQ(o.endpoint, hub.base() + "/");
  EXPECT_EQ(o.token, "hf_abc123");
  o.progress = PullOptions::Progress::kNever;
  pull(store_, ref_, o);
  ASSERT_EQ(hub.seen().size(), 1u);
  EXPECT_EQ(hub.seen()[0].authorization, "Bearer hf_abc123");
  EXPECT_EQ(hub.seen()[0].path, kFilePath);  // no double slash from the trailing '/'
}

TEST_F(Pull, NotFoundMessage) {
  FileServer hub(model_);
  options_.endpoint = hub.base();
  const ModelRef missing = parse_model_ref("test-owner/tiny-GGUF/missing.gguf");
  const std::string msg = error_of([&] { pull(store_, missing, options_); });
  EXPECT_EQ(msg, "not found on the hub: " + hub.base() +
                     "/test-owner/tiny-GGUF/resolve/main/missing.gguf (HTTP 404)");
  EXPECT_TRUE(store_.list().empty());
  // A 404 cannot be resumed: no .part is left behind.
  EXPECT_FALSE(std::filesystem::exists(store_.path_for(missing).string() + ".part"));
  EXPECT_TRUE(store_.partial_downloads().empty());
  // Nor an empty folder for the repository.
  EXPECT_FALSE(std::filesystem::exists(store_.path_for(missing).parent_path()));
}

TEST_F(Pull, HttpErrorRemovesAPartFromAnEarlierRun) {
  FileServer hub(model_);
  hub.forced_status = 404;
  options_.endpoint = hub.base();
  const auto part = store_.path_for(ref_).string() + ".part";
  test::write_file(part, model_.substr(0, 1000));
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("HTTP 404"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(part));
}

// No network: a port nothing listens on fails at once (no retries with
// backoff), naming the cause and what to do, and reports what it is doing
// before it starts.
TEST_F(Pull, UnreachableServerFailsFastWithCauseAndHint) {
  int port = 0;
  {
    FileServer gone(model_);  // learn a free port, then close it
    port = std::stoi(gone.base().substr(gone.base().rfind(':') + 1));
  }
  options_ = PullOptions{};  // the real retry count and delays
  options_.progress = PullOptions::Progress::kNever;
  options_.endpoint = "http://127.0.0.1:" + std::to_string(port);
  std::vector<std::string> status;
  options_.on_status = [&](const std::string& line) { status.push_back(line); };
  const auto part = store_.path_for(ref_).string() + ".part";
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 5.0) << msg;
  EXPECT_NE(msg.find(options_.endpoint), std::string::npos) << msg;
  EXPECT_NE(msg.find("Connection refused"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HF_ENDPOINT"), std::string::npos) << msg;
  EXPECT_NE(msg.find("offline"), std::string::npos) << msg;
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0], "downloading " + options_.endpoint + kFilePath);
  EXPECT_FALSE(std::filesystem::exists(part));  // it was empty

  // What an earlier run downloaded is kept for the next one.
  test::write_file(part, model_.substr(0, 1000));
  status.clear();
  error_of([&] { pull(store_, ref_, options_); });
  EXPECT_EQ(std::filesystem::file_size(part), 1000u);
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].rfind("resuming ", 0), 0u) << status[0];
  ASSERT_EQ(store_.partial_downloads().size(), 1u);
  EXPECT_EQ(store_.partial_downloads()[0].name, kSpec);
}

TEST_F(Pull, UnauthorizedMentionsHfToken) {
  FileServer hub(model_);
  hub.forced_status = 401;
  hub.error_message = "Access to model test-owner/tiny-GGUF is restricted.";
  options_.endpoint = hub.base();
  std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("HTTP 401"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set HF_TOKEN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("is restricted"), std::string::npos) << msg;
  hub.forced_status = 403;
  options_.token = "hf_x";
  msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("HTTP 403"), std::string::npos) << msg;
  EXPECT_NE(msg.find("even with HF_TOKEN"), std::string::npos) << msg;
}

TEST_F(Pull, ServerErrorsAreRetriedThenReported) {
  FileServer hub(model_);
  hub.forced_status = 503;
  options_.endpoint = hub.base();
  options_.max_retries = 2;
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("HTTP 503"), std::string::npos) << msg;
  EXPECT_EQ(hub.seen().size(), 3u);
}

TEST_F(Pull, ConnectionRefusedIsOneLine) {
  int port = 0;
  {
    FileServer gone(model_);  // learn a free port, then close it
    port = std::stoi(gone.base().substr(gone.base().rfind(':') + 1));
  }
  options_.endpoint = "http://127.0.0.1:" + std::to_string(port);
  options_.max_retries = 1;
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find(options_.endpoint), std::string::npos) << msg;
  EXPECT_NE(msg.find("Connection"), std::string::npos) << msg;
}

TEST_F(Pull, NonGgufDownloadIsRejected) {
  FileServer hub(std::string(4096, 'x'));
  options_.endpoint = hub.base();
  const std::string msg = error_of([&] { pull(store_, ref_, options_); });
  EXPECT_NE(msg.find("not a valid GGUF"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(store_.path_for(ref_).string() + ".part"));
  EXPECT_TRUE(store_.list().empty());
}

// Pull by repository: the listing names the file, then the usual download.
TEST_F(Pull, ByRepositoryPicksTheFileFromTheListing) {
  FileServer hub(model_);
  hub.listing = R"({"id":"test-owner/tiny-GGUF","siblings":[{"rfilename":"README.md"},
      {"rfilename":"stories260K.gguf"},{"rfilename":"mmproj-stories260K-f16.gguf"}]})";
  options_.endpoint = hub.base();
  std::vector<std::string> status;
  options_.on_status = [&](const std::string& line) { status.push_back(line); };
  const RepoRef repo = *parse_repo_ref("test-owner/tiny-GGUF");
  EXPECT_EQ(list_repo_ggufs(repo, options_),
            (std::vector<std::string>{"stories260K.gguf", "mmproj-stories260K-f16.gguf"}));
  const ModelRef ref = resolve_repo(repo, options_);
  EXPECT_EQ(ref.name(), kSpec);
  ASSERT_FALSE(status.empty());
  EXPECT_EQ(status[0], "listing test-owner/tiny-GGUF on " + hub.base());
  const PullResult r = pull(store_, ref, options_);
  EXPECT_EQ(r.entry.sha256, sha_);

  // A tag the repository lacks: the error lists what it has.
  const std::string msg =
      error_of([&] { resolve_repo(*parse_repo_ref("test-owner/tiny-GGUF:Q8_0"), options_); });
  EXPECT_NE(msg.find("no GGUF file tagged Q8_0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\n  stories260K.gguf"), std::string::npos) << msg;
  // An unknown repository is a 404 saying so; a malformed listing is named.
  const std::string missing =
      error_of([&] { resolve_repo(*parse_repo_ref("test-owner/nope:Q4_0"), options_); });
  EXPECT_NE(missing.find("repository not found"), std::string::npos) << missing;
  EXPECT_NE(missing.find("HTTP 404"), std::string::npos) << missing;
  hub.listing = R"({"siblings": 5})";
  EXPECT_NE(error_of([&] { list_repo_ggufs(repo, options_); }).find("no 'siblings' array"),
            std::string::npos);
  hub.listing = "[not json";
  EXPECT_NE(error_of([&] { list_repo_ggufs(repo, options_); }).find("not a JSON object"),
            std::string::npos);
}

TEST_F(Pull, ByRepositoryFailsFastWhenTheHubIsUnreachable) {
  int port = 0;
  {
    FileServer gone(model_);
    port = std::stoi(gone.base().substr(gone.base().rfind(':') + 1));
  }
  options_.endpoint = "http://127.0.0.1:" + std::to_string(port);
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { resolve_repo(*parse_repo_ref("o/r:Q4_0"), options_); });
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_NE(msg.find("Connection refused"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HF_ENDPOINT"), std::string::npos) << msg;
}

TEST(ChooseGguf, TagsAreWholeAndDefaultsFollowLlamaCpp) {
  const std::vector<std::string> files = {"m-Q4_K_M.gguf",     "m-Q4_K_S.gguf",
                                          "m-q4_0.gguf",       "m-Q8_0.gguf",
                                          "mmproj-m-f16.gguf", "sub/m-Q5_K_M.gguf"};
  auto pick = [&](const char* spec) { return choose_gguf(files, *parse_repo_ref(spec)); };
  EXPECT_EQ(pick("o/r"), "m-Q4_K_M.gguf");
  EXPECT_EQ(pick("o/r:q4_k_m"), "m-Q4_K_M.gguf");
  EXPECT_EQ(pick("o/r:Q4_0"), "m-q4_0.gguf");
  EXPECT_EQ(pick("o/r:Q5_K_M"), "sub/m-Q5_K_M.gguf");
  // Q4_K is a prefix of Q4_K_M and Q4_K_S, not their tag.
  EXPECT_THROW(pick("o/r:Q4_K"), Error);
  EXPECT_THROW(pick("o/r:f16"), Error);  // only the projector has it
  // Without Q4_K_M the next default; a single model file needs no tag.
  EXPECT_EQ(choose_gguf({"a-Q8_0.gguf", "a-Q4_0.gguf"}, *parse_repo_ref("o/r")), "a-Q4_0.gguf");
  EXPECT_EQ(choose_gguf({"only.gguf", "mmproj.gguf"}, *parse_repo_ref("o/r")), "only.gguf");
  // Several files with one tag, several with no default: the error lists them.
  std::string msg;
  try {
    choose_gguf({"a-Q4_0.gguf", "b-Q4_0.gguf"}, *parse_repo_ref("o/r:Q4_0"));
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("\n  a-Q4_0.gguf\n  b-Q4_0.gguf"), std::string::npos) << msg;
  EXPECT_THROW(choose_gguf({"a-IQ2_XS.gguf", "a-IQ3_M.gguf"}, *parse_repo_ref("o/r")), Error);
  // Split models are refused by name; no GGUF at all is said so.
  try {
    choose_gguf({"big-Q4_K_M-00002-of-00002.gguf"}, *parse_repo_ref("o/r"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("split"), std::string::npos) << e.what();
  }
  EXPECT_THROW(choose_gguf({}, *parse_repo_ref("o/r")), Error);
}

TEST(HubUrl, EncodesPathsAndRevisions) {
  ModelRef r = parse_model_ref("o/r/dir/a b+c.gguf");
  EXPECT_EQ(hub_url("https://huggingface.co", r),
            "https://huggingface.co/o/r/resolve/main/dir/a%20b%2Bc.gguf");
  r.revision = "refs/pr/1";
  EXPECT_EQ(hub_url("https://hf.example/", r),
            "https://hf.example/o/r/resolve/refs%2Fpr%2F1/dir/a%20b%2Bc.gguf");
}

}  // namespace
}  // namespace slm::store
