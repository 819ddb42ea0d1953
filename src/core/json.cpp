#include "core/json.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/check.h"
#include "topk/core.h"

namespace topk {

std::string read_file(const std::string& path) {
  int fd = open_regular_file(path);
  std::FILE* f = fdopen(fd, "rb");
  if (!f) ::close(fd);
  TOPK_CHECK(f, "cannot open %s: %s", path.c_str(), std::strerror(errno));
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  bool bad = std::ferror(f);
  std::fclose(f);
  TOPK_CHECK(!bad, "error reading %s", path.c_str());
  return s;
}

void write_file_atomic(const std::string& path, const std::function<bool(std::FILE*)>& fill) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  TOPK_CHECK(f, "cannot create %s: %s", tmp.c_str(), std::strerror(errno));
  bool ok = fill(f);
  ok = std::fflush(f) == 0 && ok;
  ok = fsync(fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    TOPK_CHECK(false, "error writing %s (disk full?)", tmp.c_str());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    TOPK_CHECK(false, "cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), std::strerror(e));
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, [&](std::FILE* f) {
    return std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  });
}

json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(what + ": invalid JSON: " + e.what());
  }
}

json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }

void write_json_file(const std::string& path, const json& j) {
  write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace topk
