// Attention metrics: entropy, selection mass, retrieval precision.
#include <cmath>
#include <limits>
#include <unordered_set>

#include "attention/plan.h"

namespace topk {

void set_indices(const char* op, AttnParams& p, const TensorView& q, const TensorView& indices);

void attention_entropy(const TensorView& q, const TensorView& k, const Seqs& seqs,
                       const AttnOpts& opts, const TensorView& entropy,
                       const TensorView& normalized) {
  const char* op = "attention_entropy";
  Plan plan = plan_attention(op, q, k, TensorView{}, seqs, opts);
  check_tensor(op, "entropy", entropy, {q.shape[0], q.shape[1], q.shape[2]}, false, true, q.device);
  check_dtype(op, "entropy", entropy, DType::f32);
  if (!normalized.empty()) {
    check_tensor(op, "normalized", normalized, {q.shape[0], q.shape[1], q.shape[2]}, false, true, q.device);
    check_dtype(op, "normalized", normalized, DType::f32);
  }
  float* e = entropy.ptr<float>();
  float* n = normalized.empty() ? nullptr : normalized.ptr<float>();
  switch (plan.backend) {
    case Backend::ref: ref::entropy(plan.p, e, n); break;
    case Backend::cpu: cpu::entropy(plan.p, e, n); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::entropy(plan.p, e, n)); break;
    default: no_backend(op, plan.backend);
  }
}

void selection_mass(const TensorView& q, const TensorView& k, const TensorView& indices,
                    const Seqs& seqs, const AttnOpts& opts, const TensorView& mass) {
  const char* op = "selection_mass";
  Plan plan = plan_attention(op, q, k, TensorView{}, seqs, opts);
  set_indices(op, plan.p, q, indices);
  check_tensor(op, "mass", mass, {q.shape[0], q.shape[1], q.shape[2]}, false, true, q.device);
  check_dtype(op, "mass", mass, DType::f32);
  switch (plan.backend) {
    case Backend::ref: ref::selection_mass(plan.p, mass.ptr<float>()); break;
    case Backend::cpu: cpu::selection_mass(plan.p, mass.ptr<float>()); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::selection_mass(plan.p, mass.ptr<float>())); break;
    default: no_backend(op, plan.backend);
  }
}

void retrieval_precision(const TensorView& approx, const TensorView& exact,
                         const TensorView& precision) {
  const char* op = "retrieval_precision";
  check_tensor(op, "exact", exact, {-1, -1, -1, -1}, false, true, Device::cpu);
  int64_t B = exact.shape[0], T = exact.shape[1], H = exact.shape[2];
  check_tensor(op, "approx", approx, {B, T, H, -1}, false, true, Device::cpu);
  check_tensor(op, "precision", precision, {B, T, H}, false, true, Device::cpu);
  check_dtype(op, "exact", exact, DType::i32);
  check_dtype(op, "approx", approx, DType::i32);
  check_dtype(op, "precision", precision, DType::f32);
  int64_t Ke = exact.shape[3], Ka = approx.shape[3];
  const int32_t* e = exact.ptr<int32_t>();
  const int32_t* a = approx.ptr<int32_t>();
  float* out = precision.ptr<float>();
  std::unordered_set<int32_t> gold, hit;
  for (int64_t r = 0; r < B * T * H; r++) {
    gold.clear();
    hit.clear();
    for (int64_t i = 0; i < Ke; i++)
      if (e[r * Ke + i] >= 0) gold.insert(e[r * Ke + i]);
    for (int64_t i = 0; i < Ka; i++)
      if (a[r * Ka + i] >= 0 && gold.count(a[r * Ka + i])) hit.insert(a[r * Ka + i]);
    out[r] = gold.empty() ? std::numeric_limits<float>::quiet_NaN()
                          : float(double(hit.size()) / double(gold.size()));
  }
}

}  // namespace topk
