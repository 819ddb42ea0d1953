// topk bench train: CPU training step time of the transformer engine, full attention against
// native top-k attention (exact top-k forward with the hard selection, sparse backward), with
// the same model, the same weights and the same data, measured in the same run.
//
// One step = forward + cross-entropy + backward + clip + AdamW, as `topk train` takes it.
// Each (S, policy) row starts from the same initial weights and sees the same batches; the
// policies of one S take their steps in turn; the reported time is the median step after the
// warm-up steps. Where the time goes is measured
// inside the step: the attention ops (forward, backward) against everything else (matmuls,
// norms, RoPE, MLP activations), the loss and the optimizer.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/policy.h"
#include "train/optim.h"

namespace topk::cli {
namespace {

struct TrainBenchOpts {
  int steps = 5, warmup = 1, layers = 4, d_model = 256, heads = 8, kv_heads = 2, ffn = 768;
  std::vector<int> S = {512, 2048};
  int batch_tokens = 2048;  // tokens per step: batch_tokens / S packed sequences of length S
  std::vector<std::string> policies;  // besides full
  int threads = 0, blas_threads = 0;
  bool json = false;
  uint64_t seed = 1;
};

struct Phase {  // milliseconds of one step
  double step = 0, fwd = 0, attn_fwd = 0, loss = 0, bwd = 0, attn_bwd = 0, optim = 0;
};

struct Row {
  int S = 0, seqs = 0;
  std::string policy;
  Phase med;  // per-phase medians
  double tokens_per_s = 0, ratio = 0;
  double first_loss = 0, last_loss = 0;
};

ModelConfig bench_model(const TrainBenchOpts& o) {
  ModelConfig c;
  c.arch = Arch::llama;
  c.hidden = o.d_model, c.inter = o.ffn, c.layers = o.layers;
  c.heads = o.heads, c.kv_heads = o.kv_heads;
  TOPK_CHECK(o.heads > 0 && o.d_model % o.heads == 0, "--d-model %d is not a multiple of --heads %d",
             o.d_model, o.heads);
  c.head_dim = o.d_model / o.heads;
  c.vocab = 259;
  c.tokenizer.present = true;
  c.bos = 256, c.eos = 257, c.pad = 258;
  for (int s : o.S) c.max_pos = std::max(c.max_pos, s);
  validate(c, "bench model");
  return c;
}

// The batch of step `step` at length S: batch_tokens / S sequences of random bytes.
Batch bench_batch(const TrainBenchOpts& o, int S, int step) {
  Rng r(o.seed * 1000003u + uint64_t(S) * 7919u + uint64_t(step));
  int nseq = std::max(1, o.batch_tokens / S);
  std::vector<std::vector<int>> seqs(size_t(nseq), std::vector<int>(size_t(S), 0));
  for (auto& s : seqs)
    for (int& t : s) t = int(r.below(256));
  return make_batch(seqs);
}

// One policy's training run at one S: its own copy of the initial weights and optimizer; the
// activations are kept between steps (as a long run would), so steps do not time page faults.
struct Runner {
  AttnPolicy pol;
  Model m;
  AdamW opt;
  Acts acts;
  std::vector<float> grad, dlogits;
  std::vector<Phase> ph;
  Row row;
};

Runner make_runner(const TrainBenchOpts& o, const ModelConfig& c, int S, const std::string& policy) {
  Runner r;
  r.pol = parse_policy(policy);
  r.m = model_create(c);
  model_init(r.m, o.seed);
  r.opt = adamw_create(r.m);
  r.grad.resize(r.m.w.size());
  r.row.S = S;
  r.row.policy = policy_str(r.pol);
  return r;
}

void train_step(Runner& r, const Batch& b, bool measured) {
  const int V = r.m.cfg.vocab;
  Phase p;
  double t0 = now_seconds();
  std::fill(r.grad.begin(), r.grad.end(), 0.0f);
  r.acts.attn_fwd_s = r.acts.attn_bwd_s = 0;
  model_forward(r.m, b, r.pol, r.acts);
  double t1 = now_seconds();
  double count = 0;
  for (size_t i = 0; i < b.mask.size(); i++) count += b.targets[i] >= 0 ? b.mask[i] : 0.0f;
  r.dlogits.resize(r.acts.logits.size());
  double loss = cross_entropy(r.acts.logits.data(), b, V, r.dlogits.data(), float(1 / count),
                              nullptr) / count;
  double t2 = now_seconds();
  model_backward(r.m, b, r.pol, r.acts, r.dlogits.data(), r.grad.data());
  double t3 = now_seconds();
  clip_grad_norm(r.grad.data(), r.grad.size(), 1.0f);
  adamw_step(r.opt, r.m, r.grad.data(), 1e-3f, AdamWOpts{});
  double t4 = now_seconds();
  if (r.opt.t == 1) r.row.first_loss = loss;
  r.row.last_loss = loss;
  r.row.seqs = int(b.cu_seqlens.size()) - 1;
  p.step = 1e3 * (t4 - t0), p.fwd = 1e3 * (t1 - t0), p.loss = 1e3 * (t2 - t1);
  p.bwd = 1e3 * (t3 - t2), p.optim = 1e3 * (t4 - t3);
  p.attn_fwd = 1e3 * r.acts.attn_fwd_s, p.attn_bwd = 1e3 * r.acts.attn_bwd_s;
  if (measured) r.ph.push_back(p);
}

void finish(Runner& r) {
  auto med = [&](double Phase::*f) {
    std::vector<double> v;
    for (const Phase& p : r.ph) v.push_back(p.*f);
    return median(v);
  };
  r.row.med = {med(&Phase::step), med(&Phase::fwd), med(&Phase::attn_fwd), med(&Phase::loss),
               med(&Phase::bwd), med(&Phase::attn_bwd), med(&Phase::optim)};
  r.row.tokens_per_s = double(r.row.seqs) * r.row.S / (r.row.med.step * 1e-3);
}

}  // namespace

int bench_train(int argc, char** argv) {
  TrainBenchOpts o;
  CLI::App app("CPU training step time: full attention vs native top-k attention (exact top-k "
               "forward, sparse backward), same model, weights and data, same run.",
               "topk bench train");
  std::string lengths;
  add_int(app, "--steps", o.steps, 1, 1 << 24, "measured steps per row (default 5), median reported");
  add_int(app, "--warmup", o.warmup, 0, 1 << 24, "unmeasured steps first (default 1)");
  add_text(app, "--S", lengths, "sequence lengths, comma separated (default 512,2048)")->type_name("LIST");
  add_int(app, "--batch-tokens", o.batch_tokens, 1, 1 << 24, "tokens per step (default 2048): N/S "
          "packed sequences");
  add_int(app, "--layers", o.layers, 1, 1 << 24, "layers (default 4)");
  add_int(app, "--d-model", o.d_model, 1, 1 << 24, "hidden size (default 256)");
  add_int(app, "--heads", o.heads, 1, 1 << 24, "query heads (default 8)");
  add_int(app, "--kv-heads", o.kv_heads, 1, 1 << 24, "KV heads (default 2)");
  add_int(app, "--ffn", o.ffn, 1, 1 << 24, "intermediate size (default 768; vocabulary 259)");
  app.add_option("--policy", o.policies, "a training attention policy to compare with full; "
                 "repeatable (default topk:k=64 and topk:ratio=0.05)")->allow_extra_args(false);
  add_threads(app, o.threads)->description("OpenMP and OpenBLAS threads (default: as configured)");
  add_int(app, "--blas-threads", o.blas_threads, 1, max_threads(), "OpenBLAS threads only (after --threads)");
  add_seed(app, "--seed", o.seed, "weights and data (default 1)");
  app.add_flag("--json", o.json, "one JSON object per row instead of the table");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  if (!lengths.empty()) {  // a step needs a next-token target: S >= 2
    o.S.clear();
    for (int64_t n : parse_int_list(lengths, "--S", 2, 1 << 24)) o.S.push_back(int(n));
  }
  if (o.policies.empty()) o.policies = {"topk:k=64", "topk:ratio=0.05"};
  for (const std::string& p : o.policies) {
    TOPK_CHECK(parse_policy(p).is_topk(), "--policy '%s': compare a top-k policy with full (full is "
               "always measured)", p.c_str());
  }
  if (o.threads) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  if (o.blas_threads) openblas_set_num_threads(o.blas_threads);
  ModelConfig c = bench_model(o);
  Model probe = model_create(c);
  int threads = omp_get_max_threads(), blas = openblas_get_num_threads();
  double load[3] = {0, 0, 0};  // the machine's load: other work there skews every timing
  getloadavg(load, 3);
  char cfg[160];
  std::snprintf(cfg, sizeof cfg, "L=%d d=%d Hq=%d Hkv=%d D=%d ffn=%d V=%d", c.layers, c.hidden,
                c.heads, c.kv_heads, c.head_dim, c.inter, c.vocab);
  if (!o.json) {
    std::printf("topk bench train: CPU, %d OpenMP threads, %d OpenBLAS threads, load average "
                "%.2f at start; median of %d steps after %d warm-up\n"
                "model: Llama %s, %.2fM parameters; %d tokens per step "
                "(packed sequences of length S, random bytes)\n"
                "step = forward + loss + backward + clip + AdamW; ms columns are medians; "
                "'other' = matmuls, norms, RoPE, MLP\n\n",
                threads, blas, load[0], o.steps, o.warmup, cfg, model_param_count(probe) / 1e6,
                o.batch_tokens);
    std::printf("%6s %4s  %-18s %9s %8s %7s | %8s %8s %8s %8s %6s %6s  %s\n", "S", "seqs", "policy",
                "step ms", "tok/s", "vs full", "attn fwd", "attn bwd", "othr fwd", "othr bwd",
                "loss", "optim", "loss first->last");
  }
  for (int S : o.S) {
    // The policies take their steps in turn (step 0 of each, then step 1, ...), so a change in
    // the machine's load during the run falls on all of them alike.
    std::vector<Runner> rs;
    rs.push_back(make_runner(o, c, S, "full"));
    for (const std::string& pol : o.policies) rs.push_back(make_runner(o, c, S, pol));
    for (int step = 0; step < o.warmup + o.steps; step++) {
      Batch b = bench_batch(o, S, step);
      for (Runner& r : rs) train_step(r, b, step >= o.warmup);
    }
    for (Runner& rn : rs) {
      finish(rn);
      Row& r = rn.row;
      r.ratio = r.med.step / rs[0].row.med.step;
      const Phase& p = r.med;
      if (o.json) {
        nlohmann::json j = {
            {"name", "train_step"}, {"config", cfg}, {"policy", r.policy}, {"S", S},
            {"seqs", r.seqs}, {"tokens_per_step", r.seqs * S}, {"median_step_ms", p.step},
            {"tokens_per_s", r.tokens_per_s}, {"ratio_vs_full", r.ratio}, {"threads", threads},
            {"blas_threads", blas}, {"load_avg_1m", load[0]}, {"steps", o.steps}, {"warmup", o.warmup},
            {"breakdown_ms", {{"attn_fwd", p.attn_fwd}, {"attn_bwd", p.attn_bwd},
                              {"other_fwd", p.fwd - p.attn_fwd}, {"other_bwd", p.bwd - p.attn_bwd},
                              {"loss", p.loss}, {"optim", p.optim}}},
            {"loss_first", r.first_loss}, {"loss_last", r.last_loss}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%6d %4d  %-18s %9.1f %8.0f %7.2f | %8.1f %8.1f %8.1f %8.1f %6.1f %6.1f  "
                    "%.3f->%.3f\n",
                    S, r.seqs, r.policy.c_str(), p.step, r.tokens_per_s, r.ratio, p.attn_fwd,
                    p.attn_bwd, p.fwd - p.attn_fwd, p.bwd - p.attn_bwd, p.loss, p.optim,
                    r.first_loss, r.last_loss);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace topk::cli
