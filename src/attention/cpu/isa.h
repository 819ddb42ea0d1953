// Which copy of the CPU kernels the CPU ops run: scalar, AVX2 + FMA, or AVX-512. Each file of
// this folder is compiled once per instruction set (common.h); dispatch.cpp picks the copy.
#pragma once

namespace topk::cpu {

enum class Isa { scalar, avx2, avx512 };

// The copy in use: the one set_isa chose, else the TOPK_CPU_ISA environment variable (scalar,
// avx2 or avx512, read at the first call; raises topk::Error if this CPU or build lacks it),
// else the best that this CPU and build support.
Isa isa();
// True when this build has the copy and this CPU can run it.
bool isa_supported(Isa i);
// Forces a copy from now on (tests, benchmarks); raises topk::Error when unsupported.
void set_isa(Isa i);
const char* isa_name(Isa i);

}  // namespace topk::cpu
