// Calls a public op of an installed topk: full attention over small CPU tensors, checked
// against the answer worked out by hand, and a caller error that must arrive as topk::Error.
#include <cmath>
#include <cstdio>
#include <vector>

#include <topk/attention.h>
#include <topk/core.h>

int main() {
  using namespace topk;
  // B = 1, T = 1, S = 3, Hq = 2, Hkv = 1, D = 4. Head 0's query is zero (equal scores: o is the
  // mean of the value rows); head 1's query picks key 2 by a wide margin.
  std::vector<float> q = {0, 0, 0, 0, 0, 0, 40, 0};
  std::vector<float> k = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
  std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<float> o(8, -1), lse(2, -1);
  TensorView qv = make_view(q.data(), DType::f32, {1, 1, 2, 4});
  TensorView kv = make_view(k.data(), DType::f32, {1, 3, 1, 4});
  TensorView vv = make_view(v.data(), DType::f32, {1, 3, 1, 4});
  attention_forward(qv, kv, vv, Seqs{}, AttnOpts{}, make_view(o.data(), DType::f32, {1, 1, 2, 4}),
                    make_view(lse.data(), DType::f32, {1, 1, 2}));
  const float want0[4] = {5, 6, 7, 8};
  int bad = 0;
  for (int d = 0; d < 4; ++d) {
    bad += std::fabs(o[d] - want0[d]) > 1e-5f;
    bad += std::fabs(o[4 + d] - v[8 + d]) > 1e-3f;  // softmax weight of key 2 is 1 - 2e-9
  }
  bad += std::fabs(lse[0] - std::log(3.0f)) > 1e-5f;
  bool threw = false;
  try {  // the value tensor's head dim does not match
    attention_forward(qv, kv, make_view(v.data(), DType::f32, {1, 3, 1, 3}), Seqs{}, AttnOpts{},
                      make_view(o.data(), DType::f32, {1, 1, 2, 4}),
                      make_view(lse.data(), DType::f32, {1, 1, 2}));
  } catch (const Error& e) {
    threw = true;
  }
  if (bad || !threw) {
    std::printf("consumer: FAILED (%d wrong values, error %s)\n", bad, threw ? "raised" : "missing");
    return 1;
  }
  std::printf("consumer: ok (o[0] = %g %g %g %g, lse[0] = %g)\n", o[0], o[1], o[2], o[3], lse[0]);
  return 0;
}
