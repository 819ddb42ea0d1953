#include "model/infer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/ops.h"
#include "model/views.h"

namespace topk {

int64_t kv_cache_bytes(const ModelConfig& c, int batch, int max_len, DType dtype,
                       const CacheOpts& o) {
  // Each factor is validated positive and below 2^31, so the product fits in 128 bits; check
  // it against int64 step by step.
  const int64_t ix = !c.has_indexer() ? 0
                     : o.indexer_fp8  ? int64_t(c.index_head_dim) + 4
                                      : int64_t(c.index_head_dim) * int64_t(dtype_size(dtype));
  const int64_t per_token = int64_t(c.kv_dim()) * 2 * int64_t(dtype_size(dtype)) + ix;
  int64_t bytes = per_token;
  for (int64_t f : {int64_t(c.layers), int64_t(batch), int64_t(max_len)}) {
    TOPK_CHECK(f > 0 && bytes <= INT64_MAX / f, "KV cache: %d layers x %d sequences x %d tokens "
               "overflow", c.layers, batch, max_len);
    bytes *= f;
  }
  return bytes;
}

KVCache kv_cache_create(const Model& m, int batch, int max_len, const CacheOpts& o) {
  const ModelConfig& c = m.cfg;
  TOPK_CHECK(batch > 0 && max_len > 0, "KV cache: batch (%d) and length (%d) must be positive",
             batch, max_len);
  TOPK_CHECK(!o.indexer_fp8 || c.has_indexer(), "KV cache: FP8 indexer keys asked for, but the "
             "model has no Lightning Indexer");
  const Device dev = m.device();
  const int64_t bytes = kv_cache_bytes(c, batch, max_len, m.compute(), o);
  if (dev == Device::cpu) {
    const int64_t phys = int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGE_SIZE));
    TOPK_CHECK(phys <= 0 || bytes <= phys, "KV cache: %d sequences x %d tokens need %.1f GiB, more "
               "than this machine's %.1f GiB of memory; ask for fewer tokens", batch, max_len,
               double(bytes) / (1 << 30), double(phys) / (1 << 30));
  }
  KVCache kc;
  kc.batch = batch;
  kc.max_len = max_len;
  const DType cd = m.compute();
  for (int l = 0; l < c.layers; l++) {
    kc.k.emplace_back(cd, std::initializer_list<int64_t>{batch, max_len, c.kv_heads, c.head_dim}, dev);
    kc.v.emplace_back(cd, std::initializer_list<int64_t>{batch, max_len, c.kv_heads, c.head_dim}, dev);
    if (c.has_indexer())
      kc.ki.emplace_back(o.indexer_fp8 ? DType::f8e4m3 : cd,
                         std::initializer_list<int64_t>{batch, max_len, 1, c.index_head_dim}, dev);
    if (o.indexer_fp8)
      kc.ki_scale.emplace_back(DType::f32, std::initializer_list<int64_t>{batch, max_len}, dev);
  }
  kc.len.assign(size_t(batch), 0);
  return kc;
}

void kv_cache_copy(KVCache& dst, const KVCache& src) {
  TOPK_CHECK(dst.k.size() == src.k.size() && dst.batch == src.batch && dst.max_len == src.max_len &&
                 dst.ki_scale.size() == src.ki_scale.size(),
             "kv_cache_copy: caches of different shapes or indexer key formats");
  for (size_t l = 0; l < src.k.size(); l++) {
    copy(dst.k[l], src.k[l]);
    copy(dst.v[l], src.v[l]);
    if (l < src.ki.size()) copy(dst.ki[l], src.ki[l]);
    if (l < src.ki_scale.size()) copy(dst.ki_scale[l], src.ki_scale[l]);
  }
  dst.len = src.len;
}

namespace {

template <class T>
TensorView upload(Buffer& buf, const std::vector<T>& h, DType dt, Device dev) {
  TensorView v = scratch(buf, dt, {int64_t(h.size())}, dev);
  copy(v, make_view(const_cast<T*>(h.data()), dt, {int64_t(h.size())}));
  return v;
}

}  // namespace

void model_step(const Model& m, KVCache& kc, const std::vector<std::vector<int>>& tokens,
                const AttnPolicy& pol, std::vector<float>& logits, const StepOpts& opts) {
  const ModelConfig& c = m.cfg;
  const int64_t B = kc.batch, H = c.hidden, V = c.vocab;
  TOPK_CHECK(int64_t(tokens.size()) == B, "model_step: %zu token lists for a cache of %lld "
             "sequences", tokens.size(), (long long)B);
  TOPK_CHECK(int(kc.k.size()) == c.layers, "model_step: cache has %zu layers, model %d",
             kc.k.size(), c.layers);
  int64_t T = 0;
  for (int64_t b = 0; b < B; b++) {
    const auto& tb = tokens[size_t(b)];
    T = std::max<int64_t>(T, int64_t(tb.size()));
    TOPK_CHECK(int64_t(kc.len[size_t(b)]) + int64_t(tb.size()) <= kc.max_len, "model_step: "
               "sequence %lld: %d cached + %zu new tokens exceed the cache size %d", (long long)b,
               kc.len[size_t(b)], tb.size(), kc.max_len);
    for (int t : tb)
      TOPK_CHECK(t >= 0 && t < V, "model_step: token id %d outside [0, %lld)", t, (long long)V);
  }
  TOPK_CHECK(T > 0, "model_step: no tokens");
  const int64_t N = B * T;
  std::vector<int32_t> tok(size_t(N), 0), pos(size_t(N), 0), rows(size_t(N), -1), sq(static_cast<size_t>(B)),
      sk(static_cast<size_t>(B)), pick;
  for (int64_t b = 0; b < B; b++) {
    const auto& tb = tokens[size_t(b)];
    const int64_t nb = int64_t(tb.size()), len = kc.len[size_t(b)];
    for (int64_t t = 0; t < nb; t++) {
      const size_t r = size_t(b * T + t);
      tok[r] = tb[size_t(t)];
      pos[r] = int32_t(len + t);
      rows[r] = int32_t(b * kc.max_len + len + t);
      if (opts.all_logits || t == nb - 1) pick.push_back(int32_t(r));
    }
    sq[size_t(b)] = int32_t(nb);
    sk[size_t(b)] = int32_t(len + nb);
  }
  StepScratch local;
  StepScratch& s = opts.scratch ? *opts.scratch : local;
  const Device dev = m.device();
  TensorView vtok = upload(s.tokens, tok, DType::i32, dev);
  TensorView vpos = upload(s.pos, pos, DType::i32, dev);
  AttnSite site;
  site.pol = pol;
  site.cache = &kc;
  site.append_rows = upload(s.rows, rows, DType::i32, dev);
  site.B = int(B);
  site.T = int(T);
  site.seqlens_q = sq;
  site.seqlens_k = sk;
  if (opts.stats) {
    opts.stats->resize(size_t(B));
    for (auto& st : *opts.stats) st.resize(size_t(c.layers));
    site.stats = opts.stats;
  }
  TensorView x = scratch(s.x, DType::f32, {N, H}, dev);
  TensorView out = scratch(s.out, DType::f32, {N, H}, dev);
  ops::embedding_forward(x, param_view(m, m.embed, {V, H}), vtok);
  for (int l = 0; l < c.layers; l++) {
    layer_forward(m, l, x, out, vpos, site, s.acts);
    std::swap(x, out);
  }
  for (int64_t b = 0; b < B; b++) kc.len[size_t(b)] = sk[size_t(b)];

  const int64_t R = int64_t(pick.size());
  TensorView xl = scratch(s.xl, DType::f32, {R, H}, dev);
  ops::gather_rows(xl, x, upload(s.last, pick, DType::i32, dev));
  TensorView xn = scratch(s.xn, m.compute(), {R, H}, dev);
  ops::rmsnorm_forward(xn, TensorView{}, xl, param_view(m, m.final_norm, {H}), float(c.rms_eps));
  TensorView lg = scratch(s.logits, DType::f32, {R, V}, dev);
  ops::gemm(lg, xn, false, matrix_view(m, m.lm_head, V, H), true);
  if (opts.all_logits) {
    logits.resize(size_t(R * V));
    copy(make_view(logits.data(), DType::f32, {R, V}), lg);
    return;
  }
  std::vector<float> h(size_t(R * V));
  copy(make_view(h.data(), DType::f32, {R, V}), lg);
  logits.resize(size_t(B * V));
  int64_t r = 0;
  for (int64_t b = 0; b < B; b++)
    if (sq[size_t(b)] > 0) std::copy_n(h.begin() + (r++) * V, V, logits.begin() + b * V);
}

void model_step(const Model& m, KVCache& kc, const int* tokens, int T, const AttnPolicy& pol,
                std::vector<float>& logits, bool last_only, std::vector<AttnStats>* stats) {
  TOPK_CHECK(kc.batch == 1, "model_step: a cache of %d sequences needs one token list each",
             kc.batch);
  TOPK_CHECK(T > 0, "model_step: no tokens");
  std::vector<std::vector<AttnStats>> st;
  StepOpts o;
  o.all_logits = !last_only;
  o.stats = stats ? &st : nullptr;
  model_step(m, kc, {std::vector<int>(tokens, tokens + T)}, pol, logits, o);
  if (stats) *stats = std::move(st[0]);
}

Sampler sampler_create(const SampleOpts& o) {
  return Sampler{o, Rng(o.seed)};
}

int sample(Sampler& s, const float* logits, int V) {
  if (s.o.temperature <= 0) return int(std::max_element(logits, logits + V) - logits);
  std::vector<int> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  int k = s.o.top_k > 0 && s.o.top_k < V ? s.o.top_k : V;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> p(static_cast<size_t>(k));
  double mx = logits[ids[0]], sum = 0;
  for (int i = 0; i < k; i++) sum += p[size_t(i)] = std::exp((logits[ids[size_t(i)]] - mx) / s.o.temperature);
  double u = s.rng.uniform() * sum;
  for (int i = 0; i < k; i++) {
    u -= p[size_t(i)];
    if (u <= 0) return ids[size_t(i)];
  }
  return ids[size_t(k - 1)];
}

}  // namespace topk
