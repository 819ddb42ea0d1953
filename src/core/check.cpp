#include "core/check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "topk/core.h"

namespace topk {

bool Range::contains(double v) const {
  return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
}

std::string Range::str() const {
  char b[96];
  std::snprintf(b, sizeof b, "%c%g, %g%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
  return b;
}

template <class T>
static bool whole_number(const std::string& s, T& v) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return !s.empty() && ec == std::errc() && p == end;
}

int64_t parse_int(const std::string& text, const std::string& what, int64_t lo, int64_t hi) {
  int64_t v = 0;
  TOPK_CHECK(whole_number(text, v) && v >= lo && v <= hi,
             "%s must be an integer in [%lld, %lld], got '%s'", what.c_str(), (long long)lo,
             (long long)hi, text.c_str());
  return v;
}

uint64_t parse_u64(const std::string& text, const std::string& what) {
  uint64_t v = 0;
  TOPK_CHECK(whole_number(text, v), "%s must be an integer in [0, 2^64 - 1], got '%s'",
             what.c_str(), text.c_str());
  return v;
}

double parse_real(const std::string& text, const std::string& what, const Range& r) {
  double v = 0;
  TOPK_CHECK(whole_number(text, v) && std::isfinite(v) && r.contains(v),
             "%s must be a number in %s, got '%s'", what.c_str(), r.str().c_str(), text.c_str());
  return v;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what, int64_t lo,
                                    int64_t hi) {
  std::vector<int64_t> r;
  size_t a = 0;
  for (;;) {
    size_t b = std::min(text.find(',', a), text.size());
    std::string item = text.substr(a, b - a);
    TOPK_CHECK(!item.empty(), "%s: empty item at character %zu of '%s' (write 1,2,3)",
               what.c_str(), a + 1, text.c_str());
    r.push_back(parse_int(item, what + " item", lo, hi));
    if (b == text.size()) return r;
    a = b + 1;
  }
}

static std::string field(const std::string& what, const char* key) {
  return what + ": '" + key + "'";
}

static bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

int64_t json_int(const json& j, const char* key, const std::string& what, int64_t lo, int64_t hi,
                 int64_t dflt) {
  if (!present(j, key)) return dflt;
  const json& v = j[key];
  bool ok = false;
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    ok = u <= uint64_t(INT64_MAX), x = int64_t(u);
  } else if (v.is_number_integer()) {
    ok = true, x = v.get<int64_t>();
  } else if (v.is_number_float()) {  // 1e5 is an integer; 2.7 is not
    double d = v.get<double>();
    ok = std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18, x = ok ? int64_t(d) : 0;
  }
  TOPK_CHECK(ok && x >= lo && x <= hi, "%s must be an integer in [%lld, %lld], got %s",
             field(what, key).c_str(), (long long)lo, (long long)hi, v.dump().c_str());
  return x;
}

uint64_t json_u64(const json& j, const char* key, const std::string& what, uint64_t dflt) {
  if (!present(j, key)) return dflt;
  const json& v = j[key];
  bool ok = v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  TOPK_CHECK(ok, "%s must be an integer in [0, 2^64 - 1], got %s", field(what, key).c_str(),
             v.dump().c_str());
  return v.get<uint64_t>();
}

double json_real(const json& j, const char* key, const std::string& what, const Range& r,
                 double dflt) {
  if (!present(j, key)) return dflt;
  const json& v = j[key];
  double x = v.is_number() ? v.get<double>() : NAN;
  TOPK_CHECK(std::isfinite(x) && r.contains(x), "%s must be a number in %s, got %s",
             field(what, key).c_str(), r.str().c_str(), v.dump().c_str());
  return x;
}

bool json_bool(const json& j, const char* key, const std::string& what, bool dflt) {
  if (!present(j, key)) return dflt;
  TOPK_CHECK(j[key].is_boolean(), "%s must be true or false, got %s", field(what, key).c_str(),
             j[key].dump().c_str());
  return j[key].get<bool>();
}

std::string json_string(const json& j, const char* key, const std::string& what,
                        const std::string& dflt) {
  if (!present(j, key)) return dflt;
  TOPK_CHECK(j[key].is_string(), "%s must be a string, got %s", field(what, key).c_str(),
             j[key].dump().c_str());
  return j[key].get<std::string>();
}

static const char* file_kind(mode_t m) {
  return S_ISDIR(m) ? "a folder" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
}

int open_regular_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  TOPK_CHECK(fd >= 0, "cannot open %s: %s", path.c_str(), std::strerror(errno));
  struct stat sb = {};
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    TOPK_CHECK(false, "%s is %s; expected a regular file", path.c_str(), file_kind(sb.st_mode));
  }
  return fd;
}

uint64_t memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : UINT64_MAX;
}

void check_memory(double bytes, const std::string& what) {
  double have = double(memory_bytes());
  TOPK_CHECK(bytes <= have, "%s: %.1f GB needed, more than the %.1f GB of memory here",
             what.c_str(), bytes * 1e-9, have * 1e-9);
}

}  // namespace topk
