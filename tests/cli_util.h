// Runs the built `topk` tool from a test (the path CMake passes as TOPK_BIN).
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace topk::test {

inline std::string topk_bin() { return TOPK_BIN; }

// `topk ARGS` with stdout and stderr together in `out`; returns the exit code (-1: no exit;
// 124: still running after `timeout_s`, i.e. a hang).
inline int run_topk(const std::string& args, std::string& out, int timeout_s = 300) {
  std::string cmd = "timeout -k 5 " + std::to_string(timeout_s) + " " + topk_bin() + " " + args +
                    " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  out.clear();
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace topk::test
