// Running tests on each copy of the CPU kernels (scalar, AVX2, AVX-512; see
// src/attention/cpu/isa.h). Copies that this CPU or build cannot run are skipped, with the reason.
#pragma once
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "attention/cpu/isa.h"

namespace topk::cpu {
// Test names and messages show the copy by name, not as raw bytes.
inline void PrintTo(Isa i, std::ostream* os) { *os << isa_name(i); }
}  // namespace topk::cpu

namespace topk::test {

inline const cpu::Isa kAllIsas[] = {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512};

inline std::string isa_skip_reason(cpu::Isa i) {
  return std::string("this CPU or build cannot run the ") + cpu::isa_name(i) + " kernels";
}

// Makes the CPU ops run one copy while it lives; the copy in use before comes back after.
class ForcedIsa {
 public:
  ForcedIsa() = default;
  ForcedIsa(const ForcedIsa&) = delete;
  // False, and nothing changed, when this CPU or build cannot run the copy.
  bool force(cpu::Isa i) {
    if (!cpu::isa_supported(i)) return false;
    if (!forced_) saved_ = cpu::isa();
    cpu::set_isa(i);
    forced_ = true;
    return true;
  }
  ~ForcedIsa() {
    if (forced_) cpu::set_isa(saved_);
  }

 private:
  cpu::Isa saved_ = cpu::Isa::scalar;
  bool forced_ = false;
};

// A suite whose tests run once per copy: `class Suite : public IsaTest {};`, TEST_P(Suite, ...),
// then TOPK_PER_ISA(Suite).
class IsaTest : public ::testing::TestWithParam<cpu::Isa> {
 protected:
  void SetUp() override {
    if (!isa_.force(GetParam())) GTEST_SKIP() << isa_skip_reason(GetParam());
  }

 private:
  ForcedIsa isa_;
};

#define TOPK_PER_ISA(suite)                                        \
  INSTANTIATE_TEST_SUITE_P(Isa, suite, ::testing::ValuesIn(kAllIsas), \
                           [](const auto& info) { return std::string(cpu::isa_name(info.param)); })

}  // namespace topk::test
