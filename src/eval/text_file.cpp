// bzip2-aware text reading for slm eval (see text_file.h).
#include "eval/text_file.h"

#include <bzlib.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

#include "base/error.h"

namespace slm::eval {

std::string bunzip2(std::string_view data, const std::string& name, size_t max_bytes) {
  std::string out;
  std::string buf(size_t{1} << 20, '\0');
  size_t pos = 0;
  // Each iteration decodes one stream; pbzip2 and friends write several.
  while (pos < data.size()) {
    bz_stream s{};
    if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK)
      throw Error(name + ": cannot start bzip2 decoding");
    std::unique_ptr<bz_stream, void (*)(bz_stream*)> guard(
        &s, [](bz_stream* p) { BZ2_bzDecompressEnd(p); });
    int rc = BZ_OK;
    while (rc != BZ_STREAM_END) {
      const size_t in_left = data.size() - pos;
      const unsigned in_now = static_cast<unsigned>(std::min<size_t>(in_left, 1u << 30));
      s.next_in = const_cast<char*>(data.data() + pos);
      s.avail_in = in_now;
      s.next_out = buf.data();
      s.avail_out = static_cast<unsigned>(buf.size());
      rc = BZ2_bzDecompress(&s);
      pos += in_now - s.avail_in;
      const size_t produced = buf.size() - s.avail_out;
      if (rc != BZ_OK && rc != BZ_STREAM_END)
        throw Error(name + ": corrupt bzip2 data (libbz2 error " + std::to_string(rc) + ")");
      if (out.size() + produced > max_bytes)
        throw Error(name + ": decompresses to more than " + std::to_string(max_bytes) + " bytes");
      out.append(buf.data(), produced);
      if (rc == BZ_OK && produced == 0 && s.avail_in == 0 && pos >= data.size())
        throw Error(name + ": truncated bzip2 data");
    }
  }
  return out;
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path + ": read failed");
  if (data.size() >= 4 && data.compare(0, 3, "BZh") == 0 && data[3] >= '1' && data[3] <= '9')
    return bunzip2(data, path, max_bytes);
  if (data.size() > max_bytes)
    throw Error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
  return data;
}

}  // namespace slm::eval
