// A one-line progress report for long loops: "step 120/300  loss 1.2345  lr 2.1e-03
// 12.3k tok/s  elapsed 0:10  ETA 0:15". On a terminal the line redraws in place.
#pragma once
#include <cstdint>
#include <string>

namespace topk {

struct Progress {
  int64_t total = 0, start = 0;  // steps in all; step the run (re)started at
  double t0 = 0;
  bool tty = false;
};

Progress progress_start(int64_t total, int64_t start);
std::string progress_line(const Progress& p, int64_t done, double loss, double lr,
                          double tokens_per_s);
// Prints the line to stderr: in place on a terminal, else as its own line.
void progress_print(const Progress& p, const std::string& line, bool final);
std::string format_duration(double seconds);  // "1:02:03" or "2:03"

}  // namespace topk
