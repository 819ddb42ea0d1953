// The eval sweep: examples -> prefill -> greedy decode under each policy -> score + statistics.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/progress.h"
#include "core/timer.h"
#include "eval/eval.h"
#include "model/decode.h"
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

// Examples ex[i0 .. i0+B) under every policy, decoded together. With a full-attention prefill
// (the protocol) the prompts are prefilled once and each policy decodes from a copy of that cache.
std::vector<std::vector<Acc>> run_batch(const Model& m, const std::vector<tasks::Example>& ex,
                                        size_t i0, size_t B, const std::vector<AttnPolicy>& pols,
                                        bool policy_prefill, const CacheOpts& cache) {
  const ModelConfig& c = m.cfg;
  std::vector<std::vector<int>> prompts;
  std::vector<int> last, budget;
  for (size_t b = 0; b < B; b++) {
    const tasks::Example& e = ex[i0 + b];
    std::vector<int> ids = encode(m.tok, e.prompt + e.answer_prefix, true);
    TOPK_CHECK(int64_t(ids.size()) == e.prompt_tokens && ids.size() >= 2, "eval: %s example "
               "encodes to %zu tokens, expected %lld", e.task.c_str(), ids.size(),
               (long long)e.prompt_tokens);
    last.push_back(ids.back());
    budget.push_back(int(e.answer_tokens));
    prompts.push_back(std::move(ids));
  }
  const int most = *std::max_element(budget.begin(), budget.end());
  StepScratch s;
  KVCache shared;
  if (!policy_prefill) shared = prefill_prompts(m, prompts, most, AttnPolicy{}, s, cache);
  std::vector<std::vector<Acc>> r(B, std::vector<Acc>(pols.size()));
  for (size_t p = 0; p < pols.size(); p++) {
    KVCache kc;
    if (policy_prefill) {
      kc = prefill_prompts(m, prompts, most, pols[p], s, cache);
    } else {
      kc = kv_cache_create(m, shared.batch, shared.max_len, cache);
      kv_cache_copy(kc, shared);
    }
    std::vector<std::vector<int>> out(B);
    for (size_t b = 0; b < B; b++) acc_init(r[b][p], c.layers, c.heads);
    greedy_decode(m, kc, last, budget, m.tok.eos_ids, pols[p], true,
                  [&](int b, int tok, const std::vector<AttnStats>* st) {
                    acc_add(r[size_t(b)][p], *st);
                    if (std::find(m.tok.eos_ids.begin(), m.tok.eos_ids.end(), tok) ==
                        m.tok.eos_ids.end())
                      out[size_t(b)].push_back(tok);
                    return true;
                  },
                  s);
    for (size_t b = 0; b < B; b++) {
      Acc& a = r[b][p];
      a.prediction = decode(m.tok, out[b], true);
      a.score = tasks::score(ex[i0 + b].scorer, a.prediction, ex[i0 + b].gold);
    }
  }
  return r;
}

}  // namespace

int batch_size(const EvalOpts& o, const Model& m) {
  if (o.batch > 0) return o.batch;
  return m.device() == Device::cuda ? 16 : 1;
}

void validate(const EvalOpts& o) {
  TOPK_CHECK(!o.tasks.empty(), "eval: no tasks (topk data --list shows them)");
  TOPK_CHECK(!o.lengths.empty(), "eval: no lengths");
  TOPK_CHECK(!o.policies.empty(), "eval: no attention policies");
  TOPK_CHECK(o.samples > 0, "eval: samples must be positive, got %d", o.samples);
  tasks::parse_mode(o.mode);
  for (const auto& t : o.tasks) {
    TOPK_CHECK(tasks::find_task(t), "eval: unknown task '%s' (topk data --list shows the tasks)",
               t.c_str());
    for (int64_t len : o.lengths)
      TOPK_CHECK(len > 0, "eval: length %lld must be positive", (long long)len);
  }
  for (const auto& p : o.policies) parse_policy(p);
}

Report run(const Model& m, const EvalOpts& o) {
  validate(o);
  TOPK_CHECK(m.tok.has_text(), "eval: the model has no tokenizer (topk's task prompts are text); "
             "its folder needs tokenizer.json, or \"topk_tokenizer\" in config.json");
  std::vector<AttnPolicy> pols;
  for (const auto& p : o.policies) pols.push_back(parse_policy(p));
  // Every (task, length) makes its first example before any model work, in the model's own
  // tokens, so that a pair that cannot be made fails now and not after the pairs before it.
  const tasks::Tokenizer ttok = task_tokenizer(m.tok);
  for (const auto& t : o.tasks)
    for (int64_t len : o.lengths) {
      tasks::Config cfg;
      cfg.length = len;
      cfg.seed = o.seed;
      cfg.mode = tasks::parse_mode(o.mode);
      tasks::generate(t, cfg, ttok);  // its error names the task, the length and the minimum
    }
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
      std::vector<tasks::Example> ex(size_t(o.samples));
      const double c0 = now_seconds();
      std::string err;
#pragma omp parallel for schedule(dynamic, 1)
      for (int i = 0; i < o.samples; i++) {
        try {
          tasks::Config cfg;
          cfg.length = len;
          cfg.seed = o.seed + uint64_t(i);
          cfg.mode = tasks::parse_mode(o.mode);
          ex[size_t(i)] = tasks::generate(task, cfg, ttok);
          ctx[size_t(i)] = ex[size_t(i)].prompt_tokens;
        } catch (const std::exception& e) {
#pragma omp critical
          err = e.what();
        }
      }
      if (!err.empty()) throw Error(err);
      // On the CPU, batches of one example run in parallel threads (the ops of a tiny model are
      // too small to share); on CUDA, batches run one after another, each filling the GPU.
      const int batch = batch_size(o, m);
      const int nb = (o.samples + batch - 1) / batch;
#pragma omp parallel for schedule(dynamic, 1) if (m.device() == Device::cpu)
      for (int bi = 0; bi < nb; bi++) {
        try {
          const size_t i0 = size_t(bi) * size_t(batch);
          const size_t B = std::min<size_t>(size_t(batch), size_t(o.samples) - i0);
          std::vector<std::vector<Acc>> part = run_batch(m, ex, i0, B, pols, o.policy_prefill,
                                                         CacheOpts{.indexer_fp8 = o.indexer_fp8});
          for (size_t b = 0; b < B; b++) res[i0 + b] = std::move(part[b]);
#pragma omp critical
          {
            done += int64_t(B);
            // On a terminal the line redraws for every batch; in a log, about 20 lines in all.
            if (o.progress && (pr.tty || done == total || done % std::max<int64_t>(1, total / 20) < int64_t(B))) {
              double el = now_seconds() - pr.t0;
              char buf[256];
              std::snprintf(buf, sizeof buf, "eval %lld/%lld examples  %s @ %lld  elapsed %s  ETA %s",
                            (long long)done, (long long)total, task.c_str(), (long long)len,
                            format_duration(el).c_str(),
                            format_duration(el / double(done) * double(total - done)).c_str());
              progress_print(pr, buf, done == total);
            }
          }
        } catch (const std::exception& e) {
#pragma omp critical
          err = e.what();
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
