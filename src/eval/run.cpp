// The eval sweep: examples -> prefill -> greedy decode under each policy -> score + statistics.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/progress.h"
#include "core/timer.h"
#include "eval/eval.h"
#include "model/infer.h"
#include "model/tokenizer.h"
#include "tasks/tasks.h"

namespace topk::eval {

namespace {

// Sums of the statistics of one example under one policy.
struct Acc {
  double score = 0, rho = 0;
  int64_t steps = 0;
  std::vector<std::vector<double>> prec, mass, ent, entn;  // [L][Hq] sums
  std::string prediction;
};

void acc_init(Acc& a, int L, int H) {
  for (auto* v : {&a.prec, &a.mass, &a.ent, &a.entn})
    v->assign(size_t(L), std::vector<double>(size_t(H), 0.0));
}

void acc_add(Acc& a, const std::vector<AttnStats>& st) {
  a.steps++;
  a.rho += double(st[0].budget) / double(st[0].visible);
  for (size_t l = 0; l < st.size(); l++)
    for (size_t h = 0; h < st[l].entropy.size(); h++) {
      a.prec[l][h] += st[l].precision[h];  // NaN for full attention, and stays NaN
      a.mass[l][h] += st[l].mass[h];
      a.ent[l][h] += st[l].entropy[h];
      a.entn[l][h] += st[l].entropy_norm[h];
    }
}

// One example under one policy, from a cache holding all prompt tokens but the last.
Acc decode_example(const Model& m, const tasks::Example& e, KVCache kc, int last,
                   const AttnPolicy& pol) {
  const ModelConfig& c = m.cfg;
  Acc a;
  acc_init(a, c.layers, c.heads);
  std::vector<float> logits;
  std::vector<AttnStats> st;
  std::vector<int> out;
  int tok = last;
  for (int64_t i = 0; i < e.answer_tokens; i++) {
    model_step(m, kc, &tok, 1, pol, logits, true, &st);
    acc_add(a, st);
    tok = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (tok == c.tokenizer.eos || kc.len >= kc.max_len) break;
    out.push_back(tok);
  }
  a.prediction = tok_decode(c.tokenizer, out);
  a.score = tasks::score(e.scorer, a.prediction, e.gold);
  return a;
}

// All policies on one example: the prefill is shared when it is full attention.
std::vector<Acc> run_example(const Model& m, const tasks::Example& e,
                             const std::vector<AttnPolicy>& pols, bool policy_prefill) {
  std::vector<int> ids = tok_encode(m.cfg.tokenizer, e.prompt + e.answer_prefix, true);
  TOPK_CHECK(int64_t(ids.size()) == e.prompt_tokens && ids.size() >= 2, "eval: %s example encodes "
             "to %zu tokens, expected %lld", e.task.c_str(), ids.size(), (long long)e.prompt_tokens);
  const int P = int(ids.size()), cap = P + int(e.answer_tokens);
  std::vector<float> logits;
  std::vector<Acc> r;
  KVCache shared = kv_cache_create(m.cfg, cap);
  if (!policy_prefill) model_step(m, shared, ids.data(), P - 1, AttnPolicy{}, logits, true);
  for (const AttnPolicy& pol : pols) {
    if (!policy_prefill) {
      r.push_back(decode_example(m, e, shared, ids[size_t(P - 1)], pol));
      continue;
    }
    KVCache kc = kv_cache_create(m.cfg, cap);
    model_step(m, kc, ids.data(), P - 1, pol, logits, true);
    r.push_back(decode_example(m, e, std::move(kc), ids[size_t(P - 1)], pol));
  }
  return r;
}

}  // namespace

void validate(const EvalOpts& o) {
  TOPK_CHECK(!o.tasks.empty(), "eval: no tasks (topk data --list shows them)");
  TOPK_CHECK(!o.lengths.empty(), "eval: no lengths");
  TOPK_CHECK(!o.policies.empty(), "eval: no attention policies");
  TOPK_CHECK(o.samples > 0, "eval: samples must be positive, got %d", o.samples);
  const tasks::Mode mode = tasks::parse_mode(o.mode);
  for (const auto& t : o.tasks) {
    TOPK_CHECK(tasks::find_task(t), "eval: unknown task '%s' (topk data --list shows the tasks)",
               t.c_str());
    for (int64_t len : o.lengths) {
      int64_t need = tasks::min_length(t, tasks::byte_tokenizer(), 0, mode);
      TOPK_CHECK(len >= need, "eval: length %lld is below what task %s needs (%lld tokens)",
                 (long long)len, t.c_str(), (long long)need);
    }
  }
  for (const auto& p : o.policies) parse_policy(p);
}

Report run(const Model& m, const EvalOpts& o) {
  validate(o);
  TOPK_CHECK(m.cfg.tokenizer.present, "eval: the model has no byte tokenizer (topk's task prompts "
             "are text); config.json needs \"topk_tokenizer\"");
  std::vector<AttnPolicy> pols;
  for (const auto& p : o.policies) pols.push_back(parse_policy(p));
  const int L = m.cfg.layers, H = m.cfg.heads;
  Report rep;
  rep.opts = o;
  rep.layers = L, rep.heads = H;
  const double t0 = now_seconds();
  const int64_t total = int64_t(o.tasks.size() * o.lengths.size()) * o.samples;
  Progress pr = progress_start(total, 0);
  int64_t done = 0;
  for (const auto& task : o.tasks)
    for (int64_t len : o.lengths) {
      std::vector<std::vector<Acc>> res(size_t(o.samples));
      std::vector<int64_t> ctx(size_t(o.samples));
      const double c0 = now_seconds();
      std::string err;
#pragma omp parallel for schedule(dynamic, 1)
      for (int i = 0; i < o.samples; i++) {
        try {
          tasks::Config cfg;
          cfg.length = len;
          cfg.seed = o.seed + uint64_t(i);
          cfg.mode = tasks::parse_mode(o.mode);
          tasks::Example e = tasks::generate(task, cfg);
          ctx[size_t(i)] = e.prompt_tokens;
          res[size_t(i)] = run_example(m, e, pols, o.policy_prefill);
        } catch (const std::exception& ex) {
#pragma omp critical
          err = ex.what();
        }
#pragma omp critical
        {
          done++;
          // On a terminal the line redraws for every example; in a log, about 20 lines in all.
          if (o.progress && (pr.tty || done == total || done % std::max<int64_t>(1, total / 20) == 0)) {
            double el = now_seconds() - pr.t0;
            char buf[256];
            std::snprintf(buf, sizeof buf, "eval %lld/%lld examples  %s @ %lld  elapsed %s  ETA %s",
                          (long long)done, (long long)total, task.c_str(), (long long)len,
                          format_duration(el).c_str(),
                          format_duration(el / double(done) * double(total - done)).c_str());
            progress_print(pr, buf, done == total);
          }
        }
      }
      if (!err.empty()) throw Error(err);
      const double secs = now_seconds() - c0;
      for (size_t p = 0; p < pols.size(); p++) {
        Cell c;
        c.task = task, c.length = len, c.policy = policy_str(pols[p]);
        c.examples = o.samples;
        c.seconds = secs / double(pols.size());
        Acc sum;
        acc_init(sum, L, H);
        for (int i = 0; i < o.samples; i++) {
          const Acc& a = res[size_t(i)][p];
          c.score += a.score / o.samples;
          c.context += ctx[size_t(i)];
          sum.rho += a.rho, sum.steps += a.steps;
          for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
              sum.prec[size_t(l)][size_t(h)] += a.prec[size_t(l)][size_t(h)];
              sum.mass[size_t(l)][size_t(h)] += a.mass[size_t(l)][size_t(h)];
              sum.ent[size_t(l)][size_t(h)] += a.ent[size_t(l)][size_t(h)];
              sum.entn[size_t(l)][size_t(h)] += a.entn[size_t(l)][size_t(h)];
            }
          c.predictions.push_back(a.prediction);
        }
        c.context /= o.samples;
        c.decode_steps = sum.steps;
        const double n = double(std::max<int64_t>(sum.steps, 1));
        c.rho = sum.rho / n;
        c.layers.resize(size_t(L));
        for (int l = 0; l < L; l++) {
          LayerStats& ls = c.layers[size_t(l)];
          for (int h = 0; h < H; h++) {
            ls.head_precision.push_back(sum.prec[size_t(l)][size_t(h)] / n);
            ls.head_mass.push_back(sum.mass[size_t(l)][size_t(h)] / n);
            ls.head_entropy.push_back(sum.ent[size_t(l)][size_t(h)] / n);
            ls.head_entropy_norm.push_back(sum.entn[size_t(l)][size_t(h)] / n);
            ls.precision += ls.head_precision.back() / H;
            ls.mass += ls.head_mass.back() / H;
            ls.entropy += ls.head_entropy.back() / H;
            ls.entropy_norm += ls.head_entropy_norm.back() / H;
          }
          c.precision += ls.precision / L;
          c.mass += ls.mass / L;
          c.entropy += ls.entropy / L;
          c.entropy_norm += ls.entropy_norm / L;
          if (!o.per_head) {
            ls.head_precision.clear(), ls.head_mass.clear();
            ls.head_entropy.clear(), ls.head_entropy_norm.clear();
          }
        }
        rep.cells.push_back(std::move(c));
      }
    }
  rep.seconds = now_seconds() - t0;
  return rep;
}

}  // namespace topk::eval
