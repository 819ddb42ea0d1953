// The one place the CPU ops choose an instruction set: each op runs the copy of the kernels
// that isa() names. The choice is made once per process (or by set_isa), never per call site.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "attention/cpu/isa.h"
#include "attention/approx.h"
#include "attention/params.h"

namespace topk::cpu {

// The entry points of each compiled copy (see common.h).
#define TOPK_CPU_OPS                                                                        \
  void attention_forward(const AttnParams& p);                                              \
  void attention_backward(const AttnParams& p);                                             \
  void attention_scores(const AttnParams& p, float* scores);                                \
  void topk_select(const SelectParams& p);                                                  \
  void sparse_forward(const AttnParams& p);                                                 \
  void sparse_backward(const AttnParams& p);                                                \
  void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices, \
                              int64_t K);                                                   \
  void entropy(const AttnParams& p, float* entropy, float* normalized);                     \
  void selection_mass(const AttnParams& p, float* mass);                                    \
  void indexer_scores(const IndexerParams& p);                                              \
  void quantize_keys(const QuantizeKeysParams& p);                                          \
  void indexer_loss(const IndexerLossParams& p);                                            \
  void quest_scores(const QuestParams& p);                                                  \
  void quantized_scores(const QuantParams& p);                                              \
  void mask_scores(const MaskParams& p);
namespace scalar {
TOPK_CPU_OPS
}
#ifdef TOPK_CPU_X86
namespace avx2 {
TOPK_CPU_OPS
}
namespace avx512 {
TOPK_CPU_OPS
}
#endif
#undef TOPK_CPU_OPS

namespace {

bool cpu_has(Isa i) {
#ifdef TOPK_CPU_X86
  __builtin_cpu_init();
#if defined(__clang__) && __clang_major__ < 15  // no "f16c" for the builtin (make fuzz builds
  const bool f16c = true;                         // with clang 14); every AVX2 CPU has F16C
#else
  const bool f16c = __builtin_cpu_supports("f16c");
#endif
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (i == Isa::avx2) return avx2;
  if (i == Isa::avx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
  return i == Isa::scalar;
}

Isa from_env() {
  const char* e = std::getenv("TOPK_CPU_ISA");
  if (!e || !*e) {
    for (Isa i : {Isa::avx512, Isa::avx2})
      if (cpu_has(i)) return i;
    return Isa::scalar;
  }
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(e, isa_name(i)) != 0) continue;
    TOPK_CHECK(cpu_has(i), "TOPK_CPU_ISA=%s: this CPU or build cannot run the %s kernels", e, e);
    return i;
  }
  TOPK_CHECK(false, "TOPK_CPU_ISA=%s: expected scalar, avx2 or avx512", e);
  return Isa::scalar;
}

std::atomic<int> g_isa{-1};  // -1: not chosen yet

}  // namespace

Isa isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(from_env());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return Isa(v);
}

bool isa_supported(Isa i) { return cpu_has(i); }

void set_isa(Isa i) {
  TOPK_CHECK(cpu_has(i), "set_isa: this CPU or build cannot run the %s kernels", isa_name(i));
  g_isa.store(int(i), std::memory_order_relaxed);
}

const char* isa_name(Isa i) {
  return i == Isa::avx512 ? "avx512" : i == Isa::avx2 ? "avx2" : "scalar";
}

#ifdef TOPK_CPU_X86
#define DISPATCH(call)                     \
  switch (isa()) {                         \
    case Isa::avx512: return avx512::call; \
    case Isa::avx2: return avx2::call;     \
    case Isa::scalar: break;               \
  }                                        \
  return scalar::call
#else
#define DISPATCH(call) return scalar::call
#endif

void attention_forward(const AttnParams& p) { DISPATCH(attention_forward(p)); }
void attention_backward(const AttnParams& p) { DISPATCH(attention_backward(p)); }
void attention_scores(const AttnParams& p, float* scores) { DISPATCH(attention_scores(p, scores)); }
void topk_select(const SelectParams& p) { DISPATCH(topk_select(p)); }
void sparse_forward(const AttnParams& p) { DISPATCH(sparse_forward(p)); }
void sparse_backward(const AttnParams& p) { DISPATCH(sparse_backward(p)); }
void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices,
                            int64_t K) {
  DISPATCH(topk_attention_forward(p, sel, indices, K));
}
void entropy(const AttnParams& p, float* entropy, float* normalized) {
  DISPATCH(entropy(p, entropy, normalized));
}
void selection_mass(const AttnParams& p, float* mass) { DISPATCH(selection_mass(p, mass)); }
void indexer_scores(const IndexerParams& p) { DISPATCH(indexer_scores(p)); }
void quantize_keys(const QuantizeKeysParams& p) { DISPATCH(quantize_keys(p)); }
void indexer_loss(const IndexerLossParams& p) { DISPATCH(indexer_loss(p)); }
void quest_scores(const QuestParams& p) { DISPATCH(quest_scores(p)); }
void quantized_scores(const QuantParams& p) { DISPATCH(quantized_scores(p)); }
void mask_scores(const MaskParams& p) { DISPATCH(mask_scores(p)); }

}  // namespace topk::cpu
