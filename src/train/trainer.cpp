#include "train/trainer.h"

#include <cmath>
#include <set>

#include "core/check.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/timer.h"
#include "model/ops.h"
#include "model/forward.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/evaluate.h"
#include "train/indexer_train.h"

namespace topk {

TrainConfig train_config_from_json_text(const std::string& text, const std::string& what) {
  json j = parse_json(text, what);
  const char* w = what.c_str();
  TOPK_CHECK(j.is_object(), "%s: a run file is a JSON object", w);
  static const std::set<std::string> keys = {
      "out", "init", "model", "init_std", "task", "attention", "steps", "batch_tokens",
      "grad_accum", "lr", "min_lr", "warmup", "weight_decay", "clip", "beta1", "beta2", "seed",
      "checkpoint_every", "log_every", "resume", "eval_examples", "eval_attention", "recompute"};
  for (auto it = j.begin(); it != j.end(); ++it)
    TOPK_CHECK(keys.count(it.key()) || is_indexer_run_key(it.key()), "%s: unknown key '%s'", w,
               it.key().c_str());
  // Every number strictly, within limits that keep a step finite (docs/reliability.md).
  TrainConfig c;
  const int kMax = 1000000000;
  c.out = json_string(j, "out", what, "");
  c.init = json_string(j, "init", what, "");
  c.init_std = float(json_real(j, "init_std", what, {0, 10, true}, c.init_std));
  c.steps = int(json_int(j, "steps", what, 1, kMax, c.steps));
  c.batch_tokens = int(json_int(j, "batch_tokens", what, 1, 1 << 20, c.batch_tokens));
  c.grad_accum = int(json_int(j, "grad_accum", what, 1, 1 << 16, c.grad_accum));
  c.sched.lr = float(json_real(j, "lr", what, {0, 10, true}, c.sched.lr));
  c.sched.min_lr = float(json_real(j, "min_lr", what, {0, c.sched.lr}, c.sched.lr * 0.1f));
  c.sched.warmup = int(json_int(j, "warmup", what, 0, kMax, c.sched.warmup));
  c.adam.weight_decay = float(json_real(j, "weight_decay", what, {0, 100}, c.adam.weight_decay));
  c.adam.beta1 = float(json_real(j, "beta1", what, {0, 1, false, true}, c.adam.beta1));
  c.adam.beta2 = float(json_real(j, "beta2", what, {0, 1, false, true}, c.adam.beta2));
  c.clip = float(json_real(j, "clip", what, {0, 1e9, true}, c.clip));
  c.seed = json_u64(j, "seed", what, c.seed);
  c.checkpoint_every = int(json_int(j, "checkpoint_every", what, 0, kMax, c.checkpoint_every));
  c.log_every = int(json_int(j, "log_every", what, 0, kMax, c.log_every));
  c.resume = json_bool(j, "resume", what, c.resume);
  c.recompute = json_bool(j, "recompute", what, c.recompute);
  c.attention = parse_policy(json_string(j, "attention", what, "full"));
  check_prefill_policy(c.attention, what + ": 'attention'");
  c.eval_examples = int(json_int(j, "eval_examples", what, 0, 1000000, 0));
  c.eval_attention = parse_policy(json_string(j, "eval_attention", what, policy_str(c.attention)));
  if (j.contains("task")) c.task = task_from_json(j["task"], what);
  TOPK_CHECK(c.init.empty() != !j.contains("model"), "%s: give exactly one of \"model\" (a new "
             "model's config.json fields) and \"init\" (a model folder)", w);
  if (j.contains("model")) {
    json m = j["model"];
    TOPK_CHECK(m.is_object(), "%s: model must be an object of config.json fields", w);
    if (!m.contains("vocab_size")) m["vocab_size"] = 259;
    if (!m.contains("topk_tokenizer"))
      m["topk_tokenizer"] = {{"type", "bytes"}, {"bos", 256}, {"eos", 257}, {"pad", 258}};
    for (auto [k, v] : {std::pair{"bos_token_id", 256}, {"eos_token_id", 257}, {"pad_token_id", 258}})
      if (!m.contains(k)) m[k] = v;
    c.model = config_from_json_text(m.dump(), what + " model");
  }
  TOPK_CHECK(!c.out.empty(), "%s: \"out\" (the output folder) is required", w);
  indexer_run_keys(j, c, what);
  validate_task(c.task);
  c.sched.total = c.steps;
  c.source = j.dump();
  return c;
}

TrainResult train_run(const TrainConfig& cfg, int stop_after, Model* model_out, Dist* dist) {
  const bool lead = !dist || dist->rank == 0;  // logs, checkpoints and evaluates
  std::string ckdir = cfg.out + "/checkpoint", found;
  Model m;
  AdamW opt;
  TrainResult r;
  if (cfg.resume && find_checkpoint(ckdir, &found)) {
    json st;
    load_checkpoint(found, m, opt, st, cfg.device);
    r.start_step = st.at("step").get<int64_t>();
    TOPK_CHECK(st.value("seed", uint64_t(0)) == cfg.seed, "%s: checkpoint was trained with seed "
               "%llu, the run file says %llu", found.c_str(),
               (unsigned long long)st.value("seed", uint64_t(0)), (unsigned long long)cfg.seed);
    if (cfg.init.empty()) {
      const ModelConfig& a = cfg.model;
      const ModelConfig& b = m.cfg;
      TOPK_CHECK(a.arch == b.arch && a.hidden == b.hidden && a.inter == b.inter &&
                     a.layers == b.layers && a.heads == b.heads && a.kv_heads == b.kv_heads &&
                     a.head_dim == b.head_dim && a.vocab == b.vocab &&
                     a.index_n_heads == b.index_n_heads && a.index_head_dim == b.index_head_dim,
                 "%s holds a different model than the run file's \"model\"; use another \"out\" "
                 "or --no-resume", found.c_str());
    }
    if (cfg.log_every && lead) std::fprintf(stderr, "resuming from %s at step %lld\n", found.c_str(),
                                    (long long)r.start_step);
  } else {
    if (!cfg.init.empty()) {
      m = indexer_init_model(cfg);  // the folder, with the run file's indexer added
    } else {
      m = model_create(cfg.model);
      model_init(m, cfg.seed, cfg.init_std);
    }
    model_to(m, cfg.device);
    opt = adamw_create(m);
  }
  TOPK_CHECK(m.tok.has_text(), "training needs a model with a tokenizer: tokenizer.json or "
             "topk's byte tokenizer (topk_tokenizer in its config.json)");
  check_task_lengths(cfg.task, m.tok);
  make_dirs(cfg.out);
  Buffer grad(DType::f32, {m.numel}, m.device());
  Acts acts;  // reused by every micro-batch: buffers grow once, then stay
  acts.recompute = cfg.recompute;
  Progress prog = progress_start(cfg.steps, r.start_step);
  int64_t step = r.start_step, taken = 0;
  const double t_start = now_seconds();
  double t_last = t_start, tokens_since = 0;
  auto checkpoint = [&](double loss) {
    TOPK_CHECK(ops::all_finite(m.w), "step %lld: the weights hold NaN or infinity; no checkpoint "
               "is written", (long long)step);
    json st = {{"step", step}, {"seed", cfg.seed}, {"loss", loss},
               {"attention", policy_str(cfg.attention)}};
    if (cfg.indexer_stage != IndexerStage::none)
      st["indexer_stage"] = indexer_stage_name(cfg.indexer_stage);
    if (!cfg.source.empty()) st["run"] = json::parse(cfg.source);
    save_checkpoint(ckdir, m, opt, st);
    r.checkpoint = ckdir;
  };
  while (step < cfg.steps && (stop_after < 0 || taken < stop_after)) {
    std::vector<Batch> micro;
    double count = 0;
    for (int a = 0; a < cfg.grad_accum; a++) {
      micro.push_back(make_task_batch(cfg.task, m.tok, cfg.seed, step, a, cfg.batch_tokens));
      count += loss_count(micro.back());
    }
    TOPK_CHECK(count > 0, "step %lld: the batch has no token in the loss", (long long)step);
    double loss = 0, kl = 0;
    if (cfg.indexer_stage != IndexerStage::none) {
      TOPK_CHECK(!dist, "indexer_stage %s trains on one GPU (data-parallel indexer training is not "
                 "supported); leave out --gpus", indexer_stage_name(cfg.indexer_stage));
      ops::zero(grad);
      loss = indexer_step(m, cfg, micro, count, acts, grad, &kl);
    } else {
      loss = shard_grad(m, micro, count, dist ? dist->rank : 0, dist ? dist->world : 1,
                        cfg.attention, acts, grad, dist);
      if (dist) loss = dist_sum(*dist, loss);  // grad is the global batch's on every rank now
    }
    for (const Batch& b : micro) tokens_since += b.size();
    loss /= count;
    const double norm = cfg.indexer_stage == IndexerStage::sparse ? indexer_clip(m, grad, cfg.clip)
                                                                  : clip_grad_norm(grad, cfg.clip);
    TOPK_CHECK(std::isfinite(loss) && std::isfinite(norm), "step %lld: the loss is %g and the "
               "gradient norm %g; training stops here (the last checkpoint is kept as it was). "
               "A lower lr, a warm-up or clipping may help", (long long)step, loss, norm);
    float lr = lr_at(cfg.sched, step);
    size_t p0 = 0, p1 = 0;  // the parameters this stage trains
    indexer_trainable(m, cfg.indexer_stage, &p0, &p1);
    adamw_step(opt, m, grad, lr, cfg.adam, p0, p1);
    r.losses.push_back(loss);
    if (cfg.indexer_stage != IndexerStage::none) r.indexer_losses.push_back(kl);
    step++, taken++;
    bool out_of_time = cfg.stop_seconds >= 0 && now_seconds() - t_start >= cfg.stop_seconds;
    if (dist && cfg.stop_seconds >= 0) out_of_time = dist_sum(*dist, out_of_time ? 1.0 : 0.0) > 0;
    const bool last = step == cfg.steps || taken == stop_after || out_of_time;
    if (lead && cfg.log_every && (step % cfg.log_every == 0 || last)) {
      double now = now_seconds();
      std::string line = progress_line(prog, step, loss, lr, tokens_since / (now - t_last));
      if (cfg.indexer_stage != IndexerStage::none) line += "  indexer kl " + std::to_string(kl);
      progress_print(prog, line, last);
      t_last = now, tokens_since = 0;
    }
    if (last || (cfg.checkpoint_every && step % cfg.checkpoint_every == 0)) {
      if (lead) checkpoint(loss);
      r.checkpoint = ckdir;
    }
    if (out_of_time) break;
  }
  r.end_step = step;
  if (lead && cfg.eval_examples > 0 && step == cfg.steps) {
    EvalResult e = task_accuracy(m, cfg.task, cfg.eval_examples, cfg.seed + 7919, AttnPolicy{},
                                 cfg.eval_attention);
    r.accuracy = e.accuracy();
    if (cfg.log_every)
      std::fprintf(stderr, "held-out exact match (%s decode): %d/%d = %.3f\n",
                   policy_str(cfg.eval_attention).c_str(), e.exact, e.examples, r.accuracy);
  }
  if (r.checkpoint.empty() && cfg.resume) r.checkpoint = found;
  if (model_out) *model_out = std::move(m);
  return r;
}

}  // namespace topk
