// Choosing the copy of the CPU kernels: TOPK_CPU_ISA reaches the tool (the decode benchmark says
// which copy ran), a copy this CPU lacks or an unknown name is an error rather than a silent
// fallback, and set_isa refuses what the CPU cannot run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cli_util.h"
#include "isa_util.h"
#include "topk/core.h"

namespace topk::test {
namespace {

// `topk bench attention` on a tiny shape with TOPK_CPU_ISA=isa; the environment is restored.
int bench_with(const std::string& isa, std::string& out) {
  const char* old = std::getenv("TOPK_CPU_ISA");
  std::string saved = old ? old : "";
  setenv("TOPK_CPU_ISA", isa.c_str(), 1);
  int rc = run_topk("bench attention --S 300 --Hq 4 --Hkv 2 --D 40 --k 8 --repeats 1 "
                    "--scan-mib 4 --no-hugepages --json",
                    out);
  if (old) setenv("TOPK_CPU_ISA", saved.c_str(), 1);
  else unsetenv("TOPK_CPU_ISA");
  return rc;
}

TEST(CpuIsa, EnvironmentVariableChoosesTheKernels) {
  for (cpu::Isa i : kAllIsas) {
    std::string name = cpu::isa_name(i), out;
    int rc = bench_with(name, out);
    if (cpu::isa_supported(i)) {
      ASSERT_EQ(rc, 0) << out;
      EXPECT_NE(out.find(", " + name + " kernels;"), std::string::npos) << out;
      EXPECT_NE(out.find("\"isa\":\"" + name + "\""), std::string::npos) << out;
    } else {
      EXPECT_NE(rc, 0) << out;
      EXPECT_NE(out.find("cannot run the " + name + " kernels"), std::string::npos) << out;
    }
  }
  std::string out;
  EXPECT_NE(bench_with("sse9", out), 0);
  EXPECT_NE(out.find("TOPK_CPU_ISA=sse9: expected scalar, avx2 or avx512"), std::string::npos) << out;
}

TEST(CpuIsa, ScalarAlwaysRunsAndSetIsaRefusesWhatTheCpuLacks) {
  EXPECT_TRUE(cpu::isa_supported(cpu::Isa::scalar));
  EXPECT_TRUE(cpu::isa_supported(cpu::isa()));
  for (cpu::Isa i : kAllIsas) {
    ForcedIsa f;
    if (cpu::isa_supported(i)) {
      EXPECT_TRUE(f.force(i));
      EXPECT_EQ(cpu::isa(), i);
    } else {
      EXPECT_THROW(cpu::set_isa(i), Error);
    }
  }
}

}  // namespace
}  // namespace topk::test
