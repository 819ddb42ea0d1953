#include "core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "core/timer.h"

namespace topk {

Progress progress_start(int64_t total, int64_t start) {
  Progress p;
  p.total = total;
  p.start = start;
  p.t0 = now_seconds();
  p.tty = isatty(fileno(stderr));
  return p;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = long(s + 0.5), h = t / 3600, m = (t / 60) % 60, sec = t % 60;
  char buf[32];
  if (h) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", h, m, sec);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", m, sec);
  return buf;
}

std::string progress_line(const Progress& p, int64_t done, double loss, double lr,
                          double tokens_per_s) {
  double el = now_seconds() - p.t0;
  double eta = done > p.start ? el / double(done - p.start) * double(p.total - done) : NAN;
  char tps[32];
  if (tokens_per_s >= 1e3) std::snprintf(tps, sizeof tps, "%.1fk", tokens_per_s / 1e3);
  else std::snprintf(tps, sizeof tps, "%.0f", tokens_per_s);
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %lld/%lld  loss %.4f  lr %.2e  %s tok/s  elapsed %s  ETA %s",
                (long long)done, (long long)p.total, loss, lr, tps, format_duration(el).c_str(),
                format_duration(eta).c_str());
  return buf;
}

void progress_print(const Progress& p, const std::string& line, bool final) {
  if (p.tty) std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace topk
